"""Registers the subcommands that live with their subsystems (gateway, serve, simulate...).

Each subsystem exposes ``register(subparsers)``; importing it must stay cheap.
"""

from __future__ import annotations

from eldercare import serve
from eldercare.cli import EXTRA_COMMANDS
from eldercare.gateway import cli as gateway_cli
from eldercare.platform import cli as platform_cli
from eldercare.simulators import cli as sim_cli

EXTRA_COMMANDS.extend(
    [gateway_cli.register, serve.register, sim_cli.register, platform_cli.register]
)
