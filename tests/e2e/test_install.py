"""`cmake --install` and `squall new`: an installed tree (moved elsewhere after installing) finds
its own Lua library, and a new project from it checks, passes its specs and serves at once."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

import harness

BIN = harness.squall_bin()
BUILD = os.path.dirname(BIN)


class InstalledTreeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="squall-install-")
        staged = os.path.join(cls.tmp, "staged")
        r = subprocess.run(["cmake", "--install", BUILD, "--prefix", staged],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("cmake --install failed:\n" + r.stdout + r.stderr)
        # This variant's binary (plain or ASan) in the installed place, and the whole tree moved:
        # nothing may point back at the source tree or the staging prefix.
        shutil.copy2(BIN, os.path.join(staged, "bin", "squall"))
        cls.prefix = os.path.join(cls.tmp, "moved")
        os.rename(staged, cls.prefix)
        cls.squall = os.path.join(cls.prefix, "bin", "squall")
        cls.env = dict(os.environ)
        cls.env.pop("SQUALL_LUA_DIR", None)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_squall(self, *args, cwd=None):
        return subprocess.run([self.squall] + list(args), capture_output=True, text=True,
                              timeout=60, env=self.env, cwd=cwd or self.tmp)

    def test_installed_layout(self):
        self.assertTrue(os.access(self.squall, os.X_OK))
        self.assertTrue(os.path.isfile(os.path.join(self.prefix, "share", "squall", "lua", "squall", "init.lua")))

    def test_new_project_checks_passes_its_specs_and_serves(self):
        proj = os.path.join(self.tmp, "proj")
        r = self.run_squall("new", proj)
        self.assertEqual(r.returncode, 0, r.stderr)
        for rel in ("config.lua", "scripts/app.lua", "spec/app_spec.lua", "db/schema.sql"):
            self.assertTrue(os.path.isfile(os.path.join(proj, rel)), rel)
        again = self.run_squall("new", proj)
        self.assertEqual(again.returncode, 1)
        self.assertIn("exists already", again.stderr)

        check = self.run_squall("--check", "-c", os.path.join(proj, "config.lua"))
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        specs = self.run_squall("test", "-c", os.path.join(proj, "config.lua"), os.path.join(proj, "spec"))
        self.assertEqual(specs.returncode, 0, specs.stdout + specs.stderr)
        self.assertIn("3 successes / 0 failures", specs.stdout + specs.stderr)

        # Served for real, on a free port, with a route that tells where squall's library is.
        cfg = os.path.join(proj, "config.lua")
        port = harness.free_port()
        with open(cfg) as f:
            text = f.read().replace("127.0.0.1:8080", "127.0.0.1:%d" % port)
        with open(cfg, "w") as f:
            f.write(text)
        app = os.path.join(proj, "scripts", "app.lua")
        with open(app) as f:
            src = f.read()
        with open(app, "w") as f:
            f.write(src.replace("return app\n", 'app:get("/lib", function() '
                                'return package.searchpath("squall", package.path) end)\nreturn app\n'))
        with open(os.path.join(self.tmp, "serve.log"), "wb") as log:
            proc = subprocess.Popen([self.squall, "-c", cfg], stdout=log, stderr=log, env=self.env,
                                    cwd=proj, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    res = harness.request(port, "GET", "/hello/ada")
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.1)
            self.assertEqual(res.status, 200)
            self.assertEqual(res.json(), {"greeting": "Hello", "name": "ada"})
            lib = harness.request(port, "GET", "/lib").body.decode()
            self.assertTrue(os.path.realpath(lib).startswith(os.path.realpath(self.prefix)), lib)
        finally:
            proc.terminate()
            self.assertEqual(proc.wait(20), 0)

    def test_debian_package_holds_a_working_tree(self):
        out = os.path.join(self.tmp, "deb")
        r = subprocess.run(["cpack", "-G", "DEB", "-B", out, "--config", os.path.join(BUILD, "CPackConfig.cmake")],
                           capture_output=True, text=True, timeout=180, cwd=BUILD)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        debs = [f for f in os.listdir(out) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, os.listdir(out))
        deb = os.path.join(out, debs[0])
        fields = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Depends"], capture_output=True, text=True)
        self.assertIn("Package: squall", fields.stdout)
        for dep in ("libluajit-5.1-2", "libuv1", "libmariadb3", "libssl3"):
            self.assertIn(dep, fields.stdout)
        root = os.path.join(self.tmp, "debroot")
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        squall = os.path.join(root, "usr", "bin", "squall")
        proj = os.path.join(self.tmp, "debproj")
        r = subprocess.run([squall, "new", proj], capture_output=True, text=True, env=self.env, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        check = subprocess.run([squall, "--check", "-c", os.path.join(proj, "config.lua")],
                               capture_output=True, text=True, env=self.env, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_new_needs_exactly_one_directory(self):
        self.assertEqual(self.run_squall("new").returncode, 2)
        self.assertEqual(self.run_squall("new", "a", "b").returncode, 2)


if __name__ == "__main__":
    harness.main()
