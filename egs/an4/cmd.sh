# How jobs run: "local" (this machine) or "slurm" (srun with the resources below).
# ASRC_BACKEND=slurm ./run.sh ...   or edit the defaults here.
export ASRC_BACKEND=${ASRC_BACKEND:-local}
train_cmd="utils/run_cmd.sh --mem 8G --time 4:00:00"
decode_cmd="utils/run_cmd.sh --mem 4G --time 1:00:00"
