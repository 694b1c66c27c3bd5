#if canImport(Glibc)
import Glibc
#endif

/// `nodus batch MANIFEST --out DIR [--ray auto|ADDRESS] [--workers N]`: runs the Python
/// module `nodus.batch`, which owns dataset generation. Scale-out lives in Python
/// (ARCHITECTURE.md): Ray has no C or Swift client, and one implementation keeps the
/// local and Ray engines' rows, files and results identical.
struct BatchCommand: Command {
    let name = "batch"
    let summary = "Run a JSONL manifest of workflow jobs on local worker processes or a Ray cluster (resumable)."
    let positionalUsage = "MANIFEST"
    let details = """
        One JSON object per line: "id", "workflow" (insert_nodule or follow_up) and its arguments, e.g.
        {"id": "r1", "workflow": "insert_nodule", "model": "models/nodule-demo", "image": "cxr.dcm",
         "center": [480, 400], "diameter": 24, "adapters": {"calcified": 0.7}, "seed": 0, "steps": 25}
        Relative paths are taken from the manifest's folder. Each row writes DIR/<id>/ and one line of
        DIR/results.jsonl; a rerun skips rows that are done. Runs `python3 -m nodus.batch` (NODUS_PYTHON
        names another interpreter) with this build's bindings/python and libnodus.so when present.
        """
    let options: [OptionSpec] = [
        .value("out", "DIR", "the output folder (required)"),
        .value("ray", "auto|ADDRESS|local", "run on Ray: this machine's cluster, a head's HOST:PORT, or a new local one"),
        .value("workers", "N", "local worker processes (default 1) or Ray actors (default: the cluster's CPUs)"),
        .flag("quiet", "no progress line"),
    ]

    func run(_ arguments: ParsedArguments) throws {
        let manifest = try arguments.positionals(["MANIFEST"])[0]
        var forwarded = [manifest, "--out", try arguments.required("out")]
        if let address = arguments.value("ray") { forwarded += ["--ray", address] }
        if arguments.value("workers") != nil {
            forwarded += ["--workers", String(try arguments.integer("workers", default: 1, in: 1...4096))]
        }
        if arguments.flag("quiet") { forwarded.append("--quiet") }
        let python = getenv("NODUS_PYTHON").map { String(cString: $0) } ?? "python3"
        prepareEnvironment()
        let command = [python, "-m", "nodus.batch"] + forwarded
        var pointers = command.map { strdup($0) } + [nil]
        execvp(python, &pointers)
        throw CLIError.failure("cannot run '\(python)': \(String(cString: strerror(errno))) (set NODUS_PYTHON to a "
            + "Python with the nodus package: pip install 'bindings/python[medical]')")
    }

    /// Points Python at this build: the repository's bindings/python on PYTHONPATH and the
    /// libnodus.so beside this executable as NODUS_LIBRARY, unless already set.
    private func prepareEnvironment() {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return }
        let executable = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let folder = String(executable[..<(executable.lastIndex(of: "/") ?? executable.endIndex)])
        if getenv("NODUS_LIBRARY") == nil, access(folder + "/libnodus.so", R_OK) == 0 {
            setenv("NODUS_LIBRARY", folder + "/libnodus.so", 1)
        }
        // .build/<triple>/release/nodus-cli: the repository is a few folders up.
        var repository = folder
        for _ in 0..<4 {
            repository += "/.."
            let bindings = repository + "/bindings/python"
            guard access(bindings + "/nodus/batch/__main__.py", R_OK) == 0 else { continue }
            let current = getenv("PYTHONPATH").map { ":" + String(cString: $0) } ?? ""
            setenv("PYTHONPATH", bindings + current, 1)
            return
        }
    }
}
