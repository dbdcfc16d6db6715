"""`dkimroll` command line.

    dkimroll up|preview|refresh|destroy [--stack NAME]   run the engine on a stack
    dkimroll rotate DOMAIN [--compromised] [--stack NAME] rotate now instead of on schedule
    dkimroll status [--stack NAME] [--json]               key ages, phases, next transitions
    dkimroll check [--stack NAME]                          DNS on every nameserver + test signatures
    dkimroll env [--stack NAME]                            shell exports for plain pulumi commands
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from pulumi import automation as auto

from dkimroll import commands, engine
from providers.errors import DkimrollError


def _print(line: str) -> None:
    sys.stdout.write(line if line.endswith("\n") else line + "\n")
    sys.stdout.flush()


def _summary(changes: dict[str, int] | None) -> str:
    if not changes:
        return "no changes"
    parts = [f"{count} {op}" for op, count in sorted(changes.items()) if op != "same" and count]
    same = (changes or {}).get("same", 0)
    return (", ".join(parts) or "no changes") + (f" ({same} unchanged)" if same else "")


def print_records(outputs: dict[str, Any]) -> None:
    """The published records, one line each: what an operator checks or pastes elsewhere."""
    records = outputs.get("records")
    if records is None:
        return
    items = records.value or []
    _print(f"\n{len(items)} DKIM record(s):")
    for item in items:
        size = len(item["value"])
        _print(f"  {item['target']:<10} {item['name']:<48} {size:>4} chars")
    _print("Full values: pulumi stack output records --json   (zone-file form in 'zone_file')")


def rotate(domain: str, compromised: bool, stack_name: str, project_dir: Path | None) -> int:
    """Start a rotation now: publish a new key; activate it after the DNS gate (and publish_ahead,
    unless compromised). With --compromised the old key is revoked as soon as the new one signs."""
    from dkimroll.program import ROTATE_ENV

    stack = engine.open_stack(stack_name, project_dir)
    domains = commands.raw_config(stack.get_all_config()).get("domains") or {}
    if domain not in domains:
        raise DkimrollError(f"{domain} is not in dkimroll:domains of stack {stack_name}")
    if compromised:
        _print(f"WARNING: emergency rotation of {domain}: the old key is revoked as soon as the new one "
               "signs; mail in flight signed with the old key will fail verification.")
    os.environ[ROTATE_ENV] = json.dumps({"domain": domain, "compromised": compromised})
    try:
        code = run_operation("up", stack_name, project_dir)
    finally:
        os.environ.pop(ROTATE_ENV, None)
    if code == 0 and compromised:
        _print("revoking the compromised key (second run)")
        code = run_operation("up", stack_name, project_dir)
    return code


def run_operation(operation: str, stack_name: str, project_dir: Path | None) -> int:
    stack = engine.open_stack(stack_name, project_dir)
    kwargs = {"on_output": _print, "color": "never"}
    if operation == "preview":
        result = stack.preview(diff=False, **kwargs)
        _print(f"preview: {_summary(result.change_summary)}")
        return 0
    if operation == "up":
        result = stack.up(**kwargs)
        _print(f"up: {_summary(result.summary.resource_changes)}")
        print_records(result.outputs)
        return 0
    if operation == "refresh":
        result = stack.refresh(**kwargs)
        _print(f"refresh: {_summary(result.summary.resource_changes)}")
        return 0
    if operation == "destroy":
        result = stack.destroy(**kwargs)
        _print(f"destroy: {_summary(result.summary.resource_changes)}")
        return 0
    raise DkimrollError(f"unknown operation {operation}")


def print_env(project_dir: Path | None, stack: str) -> int:
    """Shell exports for plain `pulumi` commands on the same backend: eval "$(make -s env)"."""
    paths = engine.Paths((project_dir or engine.REPO).resolve())
    engine.ensure_passphrase(paths)
    env = engine.engine_env(paths, stack)
    env["PULUMI_STACK"] = stack
    env["DKIMROLL_PROJECT_DIR"] = str(paths.project_dir)
    for key, value in sorted(env.items()):
        _print(f"export {key}={shlex.quote(value)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dkimroll", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("up", "create, rotate and push keys"), ("preview", "show what up would do"),
                            ("refresh", "read back DNS and signer hosts into state"),
                            ("destroy", "remove every record and file dkimroll manages")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--stack", "-s", default="demo")
        cmd.add_argument("--project-dir", type=Path, default=None)
    rot = sub.add_parser("rotate", help="rotate a domain's keys now instead of on schedule")
    rot.add_argument("domain")
    rot.add_argument("--compromised", action="store_true",
                     help="activate as soon as DNS serves the new key and revoke the old key at once")
    rot.add_argument("--stack", "-s", default="demo")
    rot.add_argument("--project-dir", type=Path, default=None)
    status_cmd = sub.add_parser("status", help="key ages, phases, next transitions and warnings")
    status_cmd.add_argument("--stack", "-s", default="demo")
    status_cmd.add_argument("--project-dir", type=Path, default=None)
    status_cmd.add_argument("--json", action="store_true", dest="as_json")
    check_cmd = sub.add_parser("check", help="query every authoritative nameserver and test-sign with each key")
    check_cmd.add_argument("--stack", "-s", default="demo")
    check_cmd.add_argument("--project-dir", type=Path, default=None)
    env_cmd = sub.add_parser("env", help="print shell exports for plain pulumi commands")
    env_cmd.add_argument("--project-dir", type=Path, default=None)
    env_cmd.add_argument("--stack", "-s", default="demo")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "env":
        return print_env(args.project_dir, args.stack)
    try:
        if args.command == "rotate":
            return rotate(args.domain, args.compromised, args.stack, args.project_dir)
        if args.command == "status":
            return commands.status(args.stack, args.project_dir, args.as_json)
        if args.command == "check":
            return commands.check(args.stack, args.project_dir)
        return run_operation(args.command, args.stack, args.project_dir)
    except auto.CommandError as exc:
        _print(f"dkimroll {args.command}: failed (see the engine output above)")
        detail = str(exc).strip().splitlines()
        if detail:
            _print(detail[-1])
        return 1
    except DkimrollError as exc:
        _print(f"dkimroll {args.command}: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
