"""Print what `make demo` produced under .demo/: zone files and each signer's files."""

from __future__ import annotations

import stat
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / ".demo"


def main() -> None:
    print("\nDemo output (all under .demo/, git-ignored):")
    for zone_file in sorted((DEMO / "zones").glob("*.zone")):
        records = sum(1 for line in zone_file.read_text().splitlines() if "._domainkey." in line)
        print(f"  zone   {zone_file.relative_to(DEMO.parent)}  ({records} DKIM record(s))")
    for signer in sorted(p for p in (DEMO / "signers").glob("*") if p.is_dir()):
        keys = sorted(signer.glob("keys/*.private"))
        tables = sorted(p.name for p in signer.glob("*Table*"))
        modes = {oct(stat.S_IMODE(k.stat().st_mode)) for k in keys}
        print(f"  signer {signer.name}: {len(keys)} key file(s) (mode {', '.join(sorted(modes)) or '-'}), "
              f"tables: {', '.join(tables)}")
    print("Run `make demo` again: nothing changes. `make preview` shows the plan; `make destroy` cleans up.")


if __name__ == "__main__":
    main()
