# lit configuration for attnc: FileCheck tests of every pipeline stage, the
# passes (through attnc-opt) and the command line.
import os
import lit.formats

config.name = "attnc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".attn", ".test"]
config.excludes = ["Inputs", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.attnc_build_dir, "tests", "lit")

config.environment["PATH"] = os.pathsep.join(
    [config.attnc_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", "")])
# Each lit run compiles into its own cache, so tests never see stale kernels.
config.environment["ATTNC_CACHE_DIR"] = os.path.join(config.test_exec_root, "kernel-cache")
config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%examples", config.attnc_examples_dir))
# Tests that chown files to another user or create device nodes need root.
if hasattr(os, "geteuid") and os.geteuid() == 0:
    config.available_features.add("root")
# GPU code without a GPU: the CUDA toolkit's ptxas assembles attnc's PTX
# (PATH, else the toolkit's default prefix); PoCL runs OpenCL kernels.
import shutil
ptxas = shutil.which("ptxas") or shutil.which("ptxas", path="/usr/local/cuda/bin")
if ptxas:
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))
if os.path.exists("/etc/OpenCL/vendors") and any(
        f.endswith(".icd") for f in os.listdir("/etc/OpenCL/vendors")):
    config.available_features.add("opencl")
# A folder with no OpenCL drivers: OCL_ICD_VENDORS pointed at it hides every
# platform (the failover tests).
config.substitutions.append(("%no_opencl_vendors", os.path.join(config.test_exec_root, "no-opencl-vendors")))
