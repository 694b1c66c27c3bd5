// swift-tools-version:6.0
import PackageDescription

// Kernels are plain pointer loops; skip exclusivity checks in them.
let fastMath: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked"])]

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
        .target(name: "NodusFormats", dependencies: ["NodusCore"]),
        .target(name: "NodusGraph", dependencies: ["NodusCore"], swiftSettings: fastMath),
        .target(name: "NodusModels", dependencies: ["NodusCore", "NodusGraph", "NodusFormats"]),
        .target(name: "NodusPipelines", dependencies: ["NodusCore", "NodusFormats", "NodusModels"],
                swiftSettings: fastMath),
        .target(name: "Nodus", dependencies: ["CNodus", "NodusCore", "NodusFormats", "NodusModels", "NodusPipelines"],
                linkerSettings: [.unsafeFlags(["-Xlinker", "-soname=libnodus.so"])]),
        // The public header as a Clang module, so the CLI is a client of the C ABI like any host.
        .target(name: "CNodus", path: "Sources/CNodus"),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .executableTarget(name: "nodus-cli", dependencies: ["Nodus", "CNodus", "CPNG", "NodusCore", "NodusFormats"]),
        .testTarget(name: "NodusTests",
                    dependencies: ["NodusCore", "NodusFormats", "NodusGraph", "NodusModels", "NodusPipelines"],
                    path: "Tests/NodusTests", resources: []),
    ],
    swiftLanguageModes: [.v5]
)
