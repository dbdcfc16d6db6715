"""Pulumi entry point. All logic lives in dkimroll.program; `make up` runs the same
program inline through the Automation API."""

from dkimroll.program import run

run()
