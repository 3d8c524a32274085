"""The ``graphops`` command's subcommand groups, one module each; ``graphops.cli`` wires them."""
