"""Opt-in accelerator: Mitogen's linear strategy, from the pinned `mitogen` package.

Turned on for one run with ``ANSIBLE_STRATEGY=mitogen_linear ansible-playbook ...`` (or
``make lab MITOGEN=1``); without it every run uses Ansible's own linear strategy. README,
"Speed", says why it is opt-in: Mitogen's strategy hook is deprecated in ansible-core 2.19.
It needs the interpreter set explicitly (ansible.cfg's interpreter_python): a task delegated
from a Debian 13 host to a Debian 12 host would otherwise be sent to python3.13.
"""

# The same two lines as ansible_mitogen/plugins/strategy/mitogen_linear.py, found here through
# ansible.cfg's strategy_plugins instead of a path inside the virtualenv.
import ansible_mitogen.loaders
import ansible_mitogen.strategy

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):  # pylint: disable=too-few-public-methods
    """Ansible's linear strategy, its tasks run over Mitogen's connections."""
