#!/usr/bin/env bash
# Kaldi-style option parsing for recipe scripts; source it after defining the defaults:
#
#   stage=1
#   nj=4
#   . utils/parse_options.sh
#
# Every "--name value" (or "--name=value") sets the shell variable "name" (dashes in the
# option become underscores) if, and only if, the script defined it (lower-case, not exported)
# before sourcing this file;
# an unknown option is an error, and so is a value of another kind than the default's where
# that is true/false or a number. "--config FILE" sources FILE first (lines "name=value").
# "--help" prints the script's leading comment block and the variables with their values.
# Positional arguments are left in "$@".

_po_usage() {
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
    echo "Options (current values):"
    for _po_name in $_po_options; do
        echo "  --${_po_name//_/-} ${!_po_name}"
    done
}

# Options are the script's own variables: lower-case names, not exported, not "_private".
_po_options=$(comm -23 <(compgen -v | grep -E '^[a-z][A-Za-z0-9_]*$' | sort) <(compgen -e | sort) | tr '\n' ' ')
_po_positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            _po_usage
            exit 0 ;;
        --config)
            [ $# -ge 2 ] || { echo "$0: --config needs a file" >&2; exit 1; }
            [ -f "$2" ] || { echo "$0: config file '$2' not found" >&2; exit 1; }
            # shellcheck disable=SC1090
            . "$2"
            shift 2 ;;
        --*=*)
            _po_key=${1%%=*}; _po_value=${1#*=}
            set -- "$_po_key" "$_po_value" "${@:2}" ;;
        --*)
            _po_name=${1#--}; _po_name=${_po_name//-/_}
            if ! [[ "$_po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [[ " $_po_options " != *" $_po_name "* ]]; then
                echo "$0: unknown option $1 (see $0 --help)" >&2
                exit 1
            fi
            [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
            # An option whose default is true/false or a number takes the same kind of value
            # (--update_teacher yes, --an4_repeats two were taken as false / 0).
            _po_old=${!_po_name}
            if [[ $_po_old == true || $_po_old == false ]] && [[ $2 != true && $2 != false ]]; then
                echo "$0: option $1 takes true or false, got '$2'" >&2
                exit 1
            fi
            if [[ $_po_old =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && ! [[ $2 =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then
                echo "$0: option $1 takes a number, got '$2'" >&2
                exit 1
            fi
            printf -v "$_po_name" '%s' "$2"
            shift 2 ;;
        *)
            _po_positional+=("$1")
            shift ;;
    esac
done
set -- "${_po_positional[@]+"${_po_positional[@]}"}"
unset _po_key _po_value _po_name _po_positional _po_old
