"""A recipe copied into a temporary folder for an end-to-end test, without its experiments."""
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def copy_an4_recipe(tmp_path: Path) -> Path:
    """``egs/an4`` without exp/, data/, db/ and the committed teacher, its utils/ linked back."""
    recipe = tmp_path / "an4"
    shutil.copytree(REPO / "egs" / "an4", recipe, symlinks=True,
                    ignore=shutil.ignore_patterns("exp", "data", "db", "teacher", "teacher12_*", ".run_*"))
    (recipe / "utils").unlink()
    (recipe / "utils").symlink_to(REPO / "egs" / "utils")
    return recipe
