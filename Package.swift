// swift-tools-version:6.0
import PackageDescription

// Kernels are plain pointer loops; skip exclusivity checks in them. Sanitizer runs (`make
// test-sanitize` sets NODUS_CHECKED) keep Swift's own checks there: overflow, bounds, exclusivity.
let fastMath: [SwiftSetting] = Context.environment["NODUS_CHECKED"] != nil ? []
    : [.unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked"])]

let package = Package(
    name: "Nodus",
    products: [
        .library(name: "nodus", type: .dynamic, targets: ["Nodus"]),
        .executable(name: "nodus-cli", targets: ["nodus-cli"]),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // Kernels with per-function AVX-512 code, chosen at run time (a Swift build targets baseline x86-64).
        .target(name: "CNodusKernels", path: "Sources/CNodusKernels"),
        .target(name: "NodusCore", dependencies: ["CBLAS", "CNodusKernels"], swiftSettings: fastMath),
        // The ONNX protobuf reader: C++17 over Debian's libonnx (1.12) and libprotobuf (3.21), a plain C
        // interface for NodusFormats. Debian builds ONNX with ONNX_ML=1, ONNX_NAMESPACE=onnx. A host of
        // libnodus.so needs the Debian runtime packages libonnx1 and libprotobuf32.
        .target(name: "CNodusONNX", path: "Sources/CNodusONNX",
                cxxSettings: [.define("ONNX_ML", to: "1"), .define("ONNX_NAMESPACE", to: "onnx")],
                linkerSettings: [.linkedLibrary("onnx"), .linkedLibrary("onnx_proto"),
                                 .linkedLibrary("protobuf"), .linkedLibrary("stdc++")]),
        .target(name: "NodusFormats", dependencies: ["NodusCore", "CNodusONNX"]),
        .target(name: "NodusGraph", dependencies: ["NodusCore"], swiftSettings: fastMath),
        .target(name: "NodusModels", dependencies: ["NodusCore", "NodusGraph", "NodusFormats"]),
        .target(name: "NodusPipelines", dependencies: ["NodusCore", "NodusFormats", "NodusModels"],
                swiftSettings: fastMath),
        .target(name: "Nodus", dependencies: ["CNodus", "NodusCore", "NodusFormats", "NodusGraph", "NodusModels", "NodusPipelines"],
                linkerSettings: [.unsafeFlags(["-Xlinker", "-soname=libnodus.so"])]),
        // The public header as a Clang module, so the CLI is a client of the C ABI like any host.
        .target(name: "CNodus", path: "Sources/CNodus"),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        // The CLI's medical file formats: DICOM through DCMTK (libdcmtk-dev), NIfTI-1 through niftilib
        // (libnifti2-dev), gray PNG through libpng, behind a plain C interface. Only the CLI links it:
        // libnodus.so stays free of file-format dependencies.
        .target(name: "CNodusMedical", path: "Sources/CNodusMedical",
                cSettings: [.headerSearchPath("niftiIncludes")],
                linkerSettings: [.linkedLibrary("dcmjpls"), .linkedLibrary("dcmjpeg"), .linkedLibrary("dcmdata"),
                                 .linkedLibrary("oflog"), .linkedLibrary("ofstd"), .linkedLibrary("niftiio"),
                                 .linkedLibrary("znz"), .linkedLibrary("png16"), .linkedLibrary("stdc++")]),
        .executableTarget(name: "nodus-cli",
                          dependencies: ["Nodus", "CNodus", "CPNG", "CNodusMedical", "NodusCore", "NodusFormats"]),
        .testTarget(name: "NodusTests",
                    dependencies: ["NodusCore", "NodusFormats", "NodusGraph", "NodusModels", "NodusPipelines"],
                    path: "Tests/NodusTests", resources: []),
    ],
    swiftLanguageModes: [.v5],
    cxxLanguageStandard: .cxx17
)

// libFuzzer targets (Fuzz/, `make fuzz`): declared only when NODUS_FUZZ is set, so a plain
// `swift build` never sees them; the Makefile builds them with `--sanitize fuzzer` in .build-fuzz.
if Context.environment["NODUS_FUZZ"] != nil {
    package.targets.append(.target(name: "FuzzSupport", dependencies: ["NodusCore"], path: "Fuzz/FuzzSupport"))
    let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
        ("json", ["NodusFormats"]), ("safetensors", ["NodusCore", "NodusFormats"]),
        ("model-config", ["NodusFormats", "NodusModels"]), ("pipeline-index", ["NodusPipelines"]),
        ("scheduler-config", ["NodusCore", "NodusFormats", "NodusPipelines"]), ("lora", ["NodusFormats"]),
        ("onnx-model", ["NodusFormats"]), ("onnx-import", ["NodusCore", "NodusFormats", "NodusModels"]),
        ("tokenizer", ["NodusFormats"]), ("npy", ["NodusFormats"]),
        ("model-folder", ["NodusCore", "NodusFormats", "NodusModels"]),
    ]
    for target in fuzzTargets {
        package.targets.append(.executableTarget(name: "fuzz-\(target.name)", dependencies: ["FuzzSupport"] + target.dependencies,
                                                 path: "Fuzz/\(target.name)"))
    }
}
