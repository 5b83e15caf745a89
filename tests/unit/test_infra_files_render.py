"""action_plugins/infra_files.py's ``template``: rendered as the template module renders it.

A real playbook run on the controller (connection local): a role's template, with a role default,
an inventory variable, ansible_managed, a loop and an if block (trim_blocks), written once by the
``template`` module and once by ``infra_files``: the two files are the same bytes; a second run
of infra_files changes nothing; a template that is not there fails naming the file's path."""

import getpass
import grp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "ansible-playbook")
if not Path(ANSIBLE_PLAYBOOK).exists():
    ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or "ansible-playbook"

TEMPLATE = """# {{ ansible_managed }} (role demo)
name = {{ demo_name }}
{% for port in demo_ports %}
listen {{ port }}
{% endfor %}
{% if demo_name == 'web' %}
web = yes
{% endif %}
host = {{ inventory_hostname }}
"""

TASKS = """
- name: With the template module
  ansible.builtin.template:
    src: demo.conf.j2
    dest: "{{ out_dir }}/by-template.conf"
    mode: "0644"
- name: With infra_files, twice
  infra_files:
    files:
      - dest: "{{ out_dir }}/by-infra-files.conf"
        template: demo.conf.j2
        owner: "{{ me }}"
        group: "{{ my_group }}"
        mode: "0644"
  loop: [first, second]
  register: runs
- name: Report
  ansible.builtin.copy:
    content: "{{ dict(runs.results | map(attribute='item') | zip(runs.results | map(attribute='changed'))) | to_json }}"
    dest: "{{ out_dir }}/report.json"
    mode: "0644"
- name: A template that is not there
  infra_files:
    files:
      - dest: "{{ out_dir }}/missing.conf"
        template: nowhere.conf.j2
        owner: "{{ me }}"
        group: "{{ my_group }}"
        mode: "0644"
"""


def run(tmp_path):
    roles = tmp_path / "roles" / "demo"
    (roles / "templates").mkdir(parents=True)
    (roles / "tasks").mkdir()
    (roles / "defaults").mkdir()
    (roles / "templates" / "demo.conf.j2").write_text(TEMPLATE)
    (roles / "tasks" / "main.yml").write_text(TASKS)
    (roles / "defaults" / "main.yml").write_text("demo_name: web\n")
    out = tmp_path / "out"
    out.mkdir()
    inventory = {"all": {"hosts": {"demo-01": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                               "demo_ports": [80, 443]}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text("- hosts: all\n  gather_facts: false\n  roles: [demo]\n")
    extra = {"out_dir": str(out), "me": getpass.getuser(), "my_group": grp.getgrgid(os.getgid()).gr_name}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(tmp_path / "roles"),
               ANSIBLE_ACTION_PLUGINS=str(ROOT / "action_plugins"), ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_NOCOLOR="1",
               ANSIBLE_INTERPRETER_PYTHON=sys.executable)
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml"),
                           "-e", json.dumps(extra)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False)
    return proc, out


def test_infra_files_renders_a_template_as_the_template_module_does(tmp_path):
    proc, out = run(tmp_path)
    output = proc.stdout + proc.stderr
    by_template = (out / "by-template.conf").read_bytes()
    assert (out / "by-infra-files.conf").read_bytes() == by_template, output
    assert b"listen 443\nweb = yes\nhost = demo-01\n" in by_template  # trim_blocks, the variables
    assert json.loads((out / "report.json").read_text()) == {"first": True, "second": False}, output
    # The last task fails, naming the file and the template.
    assert proc.returncode != 0
    assert f"{out}/missing.conf.template" in output and "nowhere.conf.j2" in output, output
