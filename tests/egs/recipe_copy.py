"""A recipe copied into a temporary folder for an end-to-end test, without its experiments;
a recipe's local script loaded as a module."""
import importlib.util
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_local_script(name: str, recipe: str = "an4"):
    """``egs/<recipe>/local/<name>.py`` as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "egs" / recipe / "local" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_an4_recipe(tmp_path: Path) -> Path:
    """``egs/an4`` without exp/, data/, db/ and the committed teacher, its utils/ linked back."""
    recipe = tmp_path / "an4"
    shutil.copytree(REPO / "egs" / "an4", recipe, symlinks=True,
                    ignore=shutil.ignore_patterns("exp", "data", "db", "teacher", "teacher12_*", ".run_*"))
    (recipe / "utils").unlink()
    (recipe / "utils").symlink_to(REPO / "egs" / "utils")
    return recipe


def tiny_an4_teacher(recipe: Path, out: Path, num_layers: int):
    """A random teacher of egs/an4's architecture (conf/teacher_model.yaml) at tiny width, saved
    as a model directory at ``out``; returns its config."""
    from asrc.data.tokens import letter_tokens
    from asrc.models import Wav2Vec2Config, build_model, save_model_dir

    cfg = Wav2Vec2Config.from_yaml(recipe / "conf" / "teacher_model.yaml")
    cfg = cfg.replace(num_layers=num_layers, embed_dim=32, ffn_dim=64, num_heads=2, pos_conv_kernel=8,
                      pos_conv_groups=4, conv_layers=[[16, k, s] for _, k, s in cfg.conv_layers])
    save_model_dir(build_model(cfg, letter_tokens()), out)
    return cfg
