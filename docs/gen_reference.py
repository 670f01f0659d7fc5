"""Reference pages generated from the code at build time (mkdocs-gen-files), so they cannot drift.

Each page is written from the table the code itself uses: the plugin's option table, the CLI's argparse
parser, the phase rules of every launcher, the exit-code enum and the asv series names.
"""

from __future__ import annotations

import argparse
import textwrap

import mkdocs_gen_files

from pytest_coldstart.cli import build_parser
from pytest_coldstart.history import asv_store
from pytest_coldstart.launch.registry import KNOWN_LAUNCHERS, phase_rules
from pytest_coldstart.model.exitcodes import MEANINGS
from pytest_coldstart.plugin.options import all_plugin_options


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def options_page() -> str:
    rows = ["| option | ini key | default | what it does |", "|---|---|---|---|"]
    for o in all_plugin_options():
        default = f"`{o.default}`" if o.default else "-"
        text = o.help.replace("%(default)s", o.default or "-")
        rows.append(f"| `{o.flag}` | `{o.dest}` | {default} | {_cell(text)} |")
    return ("# pytest options and ini keys\n\n"
            "Every option of the plugin, generated from its option table. Each is also an ini key (in "
            "`pyproject.toml`'s `[tool.pytest.ini_options]` or `pytest.ini`); the command line wins over the ini "
            "file, which wins over the default. `pytest --help` prints the same list.\n\n" + "\n".join(rows) + "\n")


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:  # argparse has no public walk over subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((name, sub))
                found.extend((f"{name} {child}", p) for child, p in _subcommands(sub))
    return found


def cli_page() -> str:
    parser = build_parser()
    parts = ["# The `coldstart` command\n",
             "Every command and flag, generated from the command's own parser (`coldstart COMMAND --help` prints "
             "the same). Exit codes: see [Exit codes](exit-codes.md).\n",
             "```text\n" + parser.format_help().rstrip() + "\n```\n"]
    for name, sub in _subcommands(parser):
        sub.prog = f"coldstart {name}"
        parts.append(f"## `coldstart {name}`\n\n```text\n{sub.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def exit_codes_page() -> str:
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| {int(code)} | {_cell(text)} |" for code, text in MEANINGS.items()]
    return ("# Exit codes\n\nOne meaning each, for every `coldstart` command and for `--coldstart-compare-to` in a "
            "pytest session (generated from `pytest_coldstart.model.exitcodes`). No traceback reaches a user: an "
            "unexpected error is one line on stderr and exit 2 (`--debug` adds the traceback).\n\n"
            + "\n".join(rows) + "\n\nIn a pytest session pytest's own codes apply as well: 1 when a test failed "
            "(a budget breach, a failed start), 4 for a usage error (a bad option or config file, before any "
            "server starts), 5 when no test was collected.\n")


def phases_page() -> str:
    parts = ["# Phases per launcher\n",
             "The phases each launcher splits a start into, in order, with the log markers that start and end "
             "each one, generated from the rules the timeline builder uses. A phase whose end marker never "
             "appears is *not observed* (never zero); the time no observed phase covers is `unaccounted_s`. "
             "Which log line sets each marker, per vLLM version: [Log grammar](log-grammar.md).\n"]
    for kind in KNOWN_LAUNCHERS:
        try:
            rules = phase_rules(kind)
        except Exception as exc:  # a launcher whose extra is not installed still gets its heading
            parts.append(f"## `{kind}`\n\nnot available in this build: {exc}\n")
            continue
        rows = ["| phase | starts at | ends at the first of | optional | what it is |", "|---|---|---|---|---|"]
        for r in rules:
            start = ", ".join(f"`{s}`" for s in r.starts) or "end of the previous observed phase"
            ends = ", ".join(f"`{e}`" for e in r.ends)
            rows.append(f"| `{r.name}` | {start} | {ends} | {'yes' if r.optional else ''} | {_cell(r.description)} |")
        parts.append(f"## `--coldstart-launcher {kind}`\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def asv_series_page() -> str:
    rows = ["| asv benchmark | metric | unit | what one sample is |", "|---|---|---|---|"]
    for bench, metric in asv_store.BENCHMARK_NAMES.items():
        entry = asv_store.benchmark_entry(metric, [["'m'"], ["'o'"], ["'l'"]])
        doc = " ".join(line.lstrip("# ") for line in str(entry["code"]).splitlines())
        rows.append(f"| `{bench}` | `{metric}` | {entry['unit']} | {_cell(doc)} |")
    for bench, metric in asv_store.SCALEOUT_BENCHMARKS.items():
        rows.append(f"| `{bench}` | `{metric}` | seconds | one scale-out run |")
    return ("# asv series\n\nThe series the history records, parameterised by "
            f"{', '.join(f'`{p}`' for p in asv_store.PARAM_NAMES)} (generated from `history/asv_store.py`).\n\n"
            + "\n".join(rows) + "\n")


def _schema_type(prop: dict[str, object]) -> str:
    if "enum" in prop:
        return ", ".join(f"`{v!r}`".replace("'", '"') for v in prop["enum"])  # type: ignore[union-attr]
    if "const" in prop:
        return f"`{prop['const']!r}`"
    if "anyOf" in prop:
        return " or ".join(_schema_type(p) for p in prop["anyOf"] if p.get("type") != "null")  # type: ignore[union-attr]
    kind = prop.get("type", "")
    if kind == "array":
        return f"list of {_schema_type(prop.get('items', {}))}"  # type: ignore[arg-type]
    if kind == "object":
        return "table"
    return {"string": "string", "integer": "integer", "number": "number", "boolean": "true/false"}.get(str(kind), "value")


def _schema_table(model: type) -> str:
    schema = model.model_json_schema()  # type: ignore[attr-defined]
    required = set(schema.get("required", ()))
    rows = ["| key | type | default | allowed |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        for member in prop.get("anyOf", ()):  # an optional value: its description and bounds are on the member
            if member.get("type") != "null":
                prop = {**member, **{k: v for k, v in prop.items() if k != "anyOf"}, "anyOf": prop["anyOf"]}
        default = ("required" if name in required else "unset" if prop.get("default", 0) is None
                   else f"`{prop['default']!r}`" if "default" in prop else "-")
        bounds = [f"{word} {prop[key]}" for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                           ("maximum", "<="), ("exclusiveMaximum", "<"))
                  if key in prop]
        allowed = prop.get("description") or ", ".join(bounds) or ""
        rows.append(f"| `{name}` | {_cell(_schema_type(prop))} | {_cell(default)} | {_cell(allowed)} |")
    return "\n".join(rows) + "\n"


def configuration_keys_page() -> str:
    from pytest_coldstart.model import schemas

    parts = ["# Configuration keys\n",
             "Every key of every TOML file, generated from the schemas the files are checked against when a "
             "session or command starts (before any server). A wrong type, an unknown key, a number out of range "
             "or not finite, or a name that is not a safe slug (letters, digits, `._-`) stops with one line naming "
             "the file, the table, the key, the value and what is allowed. How the files layer over the packaged "
             "defaults: [Configuration files](configuration.md).\n"]
    for title, model in (("`models.toml`: `[models.NAME]`", schemas.ModelEntry),
                         ("`optimizations.toml`: `[optimizations.NAME]`", schemas.OptimizationEntry),
                         ("`compare.toml`", schemas.CompareFile),
                         ("`compare.toml`: `[default]` and `[metrics.NAME]`", schemas.ThresholdTable),
                         ("`servers.toml` (`--coldstart-launcher command`): `[servers.NAME]`", schemas.ServerEntry)):
        doc = (model.__doc__ or "").strip().splitlines()[0].replace("``", "`") if model.__doc__ else ""
        parts.append(f"## {title}\n\n{doc}\n\n{_schema_table(model)}")
    parts.append("## `budgets.toml`\n\n`[MODEL.OPTIMIZATION]` (or `[MODEL.\"OPTIMIZATION@LAUNCHER\"]`, `\"*\"` for "
                 "any) tables of `PHASE = seconds`: each a finite number > 0; the phase names are those of "
                 "[Phases per launcher](phases.md) plus `total_ready_s` and `ttft_s`.\n")
    return "\n".join(parts)



def _json_type(prop: dict[str, object]) -> str:
    if "$ref" in prop:
        return f"object ({str(prop['$ref']).rsplit('/', 1)[-1]})"
    if "const" in prop:
        return f"`{prop['const']}`"
    kind = prop.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    return " or ".join(str(k) for k in kinds if k) or "any"


def results_fields_page() -> str:
    import json

    from pytest_coldstart.model.schema import REQUIRED, result_schema

    schema = result_schema()
    rows = ["| field | type | always there | what it is |", "|---|---|---|---|"]
    for name, prop in schema["properties"].items():  # type: ignore[union-attr]
        rows.append(f"| `{name}` | {_cell(_json_type(prop))} | {'yes' if name in REQUIRED else ''} | "
                    f"{_cell(prop.get('description', ''))} |")
    records = []
    for name, sub in schema.get("$defs", {}).items():  # type: ignore[union-attr]
        keys = ", ".join(f"`{k}`" for k in sub.get("properties", {}))
        records.append(f"- **`{name}`**: {_cell(sub.get('description', ''))} Keys: {keys or '(open)'}.")
    return ("# Results fields\n\nEvery field of a results file, generated from the JSON Schema the code publishes "
            "(`coldstart schema result`; the tests validate every stored results file against it). Units, "
            "conventions and versions: [Results files](results.md).\n\n" + "\n".join(rows)
            + "\n\n## Nested records\n\n" + "\n".join(records)
            + "\n\n## The schema\n\n```json\n" + json.dumps(schema, indent=2) + "\n```\n")


PAGES = {
    "reference/options.md": options_page,
    "reference/cli.md": cli_page,
    "reference/exit-codes.md": exit_codes_page,
    "reference/phases.md": phases_page,
    "reference/asv-series.md": asv_series_page,
    "reference/configuration-keys.md": configuration_keys_page,
    "reference/results-fields.md": results_fields_page,
}

for path, build in PAGES.items():
    with mkdocs_gen_files.open(path, "w") as f:
        f.write(textwrap.dedent(build()))
    mkdocs_gen_files.set_edit_path(path, "gen_reference.py")
