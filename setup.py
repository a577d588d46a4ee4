"""Copies the shipped rules, policies and schemas into the wheel as llm_firewall/bundled/.

They live at the top of the repository, where operators read and extend them; an installed
package finds its copy under bundled/. Copied at build time rather than linked, because symlinks
break on checkouts without symlink support. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = (("rules", "*.yaml"), ("policies", "*.yaml"), ("schemas", "*.json"))


class BuildWithBundled(build_py):
    def run(self) -> None:
        super().run()
        for name, pattern in BUNDLED:
            target = Path(self.build_lib, "llm_firewall", "bundled", name)
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted(Path(name).glob(pattern)):
                shutil.copy2(source, target / source.name)


setup(cmdclass={"build_py": BuildWithBundled})
