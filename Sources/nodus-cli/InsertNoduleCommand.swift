#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusFormats

/// `nodus insert-nodule MODEL --image CXR --center X,Y --diameter D --output-dir DIR`:
/// the seed's nodule-insertion workflow on one radiograph, as
/// `nodus.workflows.insert_nodule` (same geometry, mapping, painting and files,
/// except the mask: a PNG here, a DICOM SEG in Python for DICOM inputs).
struct InsertNoduleCommand: Command {
    let name = "insert-nodule"
    let summary = "Insert a synthetic nodule into a radiograph (DICOM or PNG): image, mask and a JSON sidecar."
    let positionalUsage = "MODEL"
    let details = """
        MODEL is a nodule model folder: dit/, vae/, scheduler/, lora-<characteristic>(.safetensors),
        workflow.json (standard_size: 960 in the seed, 240 for models/nodule-demo). The radiograph is
        mapped linearly to the model's [-1, 1] pixels (its first window, else its storage's range;
        MONOCHROME1 flipped); the patch around the centre is resampled from the image as resized to
        standard_size x standard_size, VAE-encoded with the mask cut out, painted by the DiT
        (guidance, LoRAs), decoded and resampled back with a feathered seam. The output has the
        input's size, bit depth and format (DICOM in: a derived DICOM marked synthetic); pixels
        outside the patch keep their stored values exactly. Also written: NAME-mask.png (0 / 255,
        the input's size) and NAME.json (model and adapter SHA-256, seed, scheduler, steps,
        weights, Nodus version). Nothing is left behind on an error.
        Example: nodus insert-nodule models/nodule-demo --image cxr.dcm --center 240,200 --diameter 24 \\
                   --lora calcified:0.7 --seed 0 --steps 50 --output-dir out/
        """
    let options: [OptionSpec] = [
        .value("image", "FILE", "the radiograph: .dcm (or a DICOM without extension) or .png (required)"),
        .value("center", "X,Y", "the nodule's centre: column, row in pixels of the image (required)"),
        .value("diameter", "D", "the nodule's diameter in pixels of the image (a disk mask)"),
        .value("mask", "FILE", "instead of --diameter: a PNG or DICOM of the image's size, nonzero = nodule"),
        .value("lora", "NAME:WEIGHT", "a characteristic LoRA of the folder and its weight", repeatable: true),
        .value("subtlety", "S", "the slider level: the subtlety LoRA at weight 2^(2+S)"),
        .value("seed", "S", "noise seed (default 0)"),
        .value("steps", "N", "sampler steps (default 50)"),
        .value("scheduler", "CLASS", "a diffusers scheduler class on the folder's betas, e.g. DPMSolverMultistepScheduler"),
        .value("guidance", "G", "guidance scale (default: workflow.json, else 4)"),
        .value("output-dir", "DIR", "where the files go (required; created if missing)"),
        .value("name", "STEM", "the output files' stem (default: the input's stem + '-nodule')"),
        .value("threads", "N", "worker threads (default: all cores)"),
    ]

    func run(_ arguments: ParsedArguments) throws {
        let folder = try arguments.positionals(["MODEL"])[0]
        let imagePath = try arguments.required("image")
        let outputFolder = try arguments.required("output-dir")
        let center = try parseCenter(try arguments.required("center"))
        let diameterText = arguments.value("diameter")
        let maskPath = arguments.value("mask")
        guard (diameterText == nil) != (maskPath == nil) else {
            throw CLIError.usage("give --diameter or --mask, one of them")
        }
        let seedText = arguments.value("seed") ?? "0"
        guard let seed = UInt64(seedText) else { throw CLIError.usage("--seed must be a non-negative integer, got '\(seedText)'") }
        let steps = try arguments.integer("steps", default: 50, in: 1...10_000)
        let threads = Int32(try arguments.integer("threads", default: 0, in: 0...4096))
        let subtlety = try arguments.value("subtlety").map { _ in try arguments.number("subtlety", default: 0) }
        let guidance = try arguments.value("guidance").map { _ in Float(try arguments.number("guidance", default: 0)) }
        let requested = try arguments.all("lora").map(parseAdapter)

        let kind = try MedicalFileKind.of(imagePath, isInput: true)
        guard kind == .dicom || kind == .png else {
            throw CLIError.usage("--image '\(imagePath)' must be a DICOM or PNG radiograph")
        }
        let radiograph = kind == .dicom ? try DICOMReader.read(imagePath) : try GrayscalePNG.read(imagePath)
        guard let storage = radiograph.storage else { throw CLIError.failure("'\(imagePath)' has no stored form") }
        let model = try NoduleModelFolder(folder: folder, threads: threads, schedulerClass: arguments.value("scheduler"))
        let placement = try PatchPlacement(width: radiograph.width, height: radiograph.height,
                                           standardSize: model.standardSize, patchSize: model.patchSize, center: center)
        var diameter: Double?
        let fullMask: [UInt8]
        let patchMask: [Float]
        if let diameterText {
            guard let value = Double(diameterText), value > 0 else {
                throw CLIError.usage("--diameter must be a positive number, got '\(diameterText)'")
            }
            diameter = value
            fullMask = placement.fullDiskMask(diameter: value)
            patchMask = placement.diskMask(diameter: value)
        } else {
            let maskFile = maskPath ?? ""
            let maskKind = try MedicalFileKind.of(maskFile, isInput: true)
            let maskImage = maskKind == .dicom ? try DICOMReader.read(maskFile) : try GrayscalePNG.read(maskFile)
            guard maskImage.width == radiograph.width, maskImage.height == radiograph.height else {
                throw CLIError.usage("the mask '\(maskFile)' is \(maskImage.width)x\(maskImage.height), the image "
                    + "'\(imagePath)' is \(radiograph.width)x\(radiograph.height); they must be the same size")
            }
            fullMask = maskImage.values.map { $0 > 0 ? 1 : 0 }
            patchMask = placement.cut(fullMask.map(Double.init)).map { $0 >= 0.5 ? 1 : 0 }
        }
        guard fullMask.contains(1), patchMask.contains(1) else { throw CLIError.usage("the nodule mask is empty") }
        let core = placement.region(core: true)
        guard !zip(fullMask, core).contains(where: { $0 == 1 && !$1 }) else {
            throw CLIError.usage("the nodule mask reaches beyond the model's \(model.patchSize)-pixel patch around "
                + "(\(center.x), \(center.y)) (at the standard size \(model.standardSize), inside its feathered seam): "
                + "use a smaller nodule or a mask around the centre")
        }
        let adapters = try model.adapterWeights(requested, subtlety: subtlety)

        let mapping = try IntensityMapping(of: radiograph, path: imagePath)
        let values = radiograph.values.map(Double.init)
        let patch = placement.cut(values.map(mapping.pixel(ofValue:))).map { min(max($0, -1), 1) }
        let painted = try model.paint(patch: patch, mask: patchMask, adapters: adapters, seed: seed, steps: steps,
                                      guidance: guidance, progressLabel: "insert-nodule")
        let pasted = placement.paste(painted.map { mapping.value(ofPixel: min(max(Double($0), -1), 1)) }, into: values)
        var result = radiograph
        result.values = zip(pasted, placement.region(core: false)).enumerated().map { index, pair in
            pair.1 ? Float(pair.0) : radiograph.values[index]  // exactly the input's outside the patch
        }

        let base = imagePath.split(separator: "/").last.map(String.init) ?? imagePath
        let stem = arguments.value("name") ?? (base.contains(".") ? String(base[..<base.lastIndex(of: ".")!]) : base) + "-nodule"
        try AtomicTextFile.makeFolder(outputFolder)
        let imageOutput = outputFolder + "/" + stem + (kind == .dicom ? ".dcm" : ".png")
        let maskOutput = outputFolder + "/" + stem + "-mask.png"
        let sidecarOutput = outputFolder + "/" + stem + ".json"
        let sidecar = try provenance(model: model, adapters: adapters, subtlety: subtlety, seed: seed, steps: steps,
                                     guidance: guidance ?? model.guidanceScale, imagePath: imagePath, radiograph: radiograph,
                                     center: center, diameter: diameter, maskPath: maskPath, placement: placement,
                                     mapping: mapping, outputs: [imageOutput, maskOutput, sidecarOutput])
        var written: [String] = []
        do {
            if kind == .dicom {
                let description = "Nodus \(String(cString: nodus_version())) insert_nodule: a synthetic nodule at "
                    + "(\(center.x), \(center.y)), seed \(seed), \(steps) \(model.schedulerName) steps, adapters "
                    + "\(adapters.isEmpty ? "none" : adapters.map { "\($0.0) \($0.1)" }.joined(separator: ", "))"
                written.append(imageOutput)
                try DerivedDICOMWriter(derivationDescription: String(description.prefix(1024)))
                    .write(result, derivedFrom: imagePath, to: imageOutput)
            } else {
                let samples = result.storedValues(in: storage).map { UInt16(clamping: $0) }
                written.append(imageOutput)
                try GrayscalePNG.write(samples: samples, width: result.width, height: result.height,
                                       bitDepth: storage.bitsAllocated, to: imageOutput)
            }
            written.append(maskOutput)
            try GrayscalePNG.write(samples: fullMask.map { UInt16($0) * 255 }, width: result.width, height: result.height,
                                   bitDepth: 8, to: maskOutput)
            written.append(sidecarOutput)
            try AtomicTextFile.write(JSONPrinter.pretty(sidecar) + "\n", to: sidecarOutput)
        } catch {
            AtomicTextFile.remove(written)
            throw error
        }
        StandardStream.output("wrote \(imageOutput)\nwrote \(maskOutput)\nwrote \(sidecarOutput)\n")
    }

    private func parseCenter(_ text: String) throws -> (x: Double, y: Double) {
        let parts = text.split(separator: ",").map { Double($0.trimmingCharacters(in: " ")) }
        guard parts.count == 2, let x = parts[0], let y = parts[1], x.isFinite, y.isFinite else {
            throw CLIError.usage("--center must be X,Y (column, row), got '\(text)'")
        }
        return (x, y)
    }

    private func parseAdapter(_ text: String) throws -> (String, Float) {
        guard let colon = text.lastIndex(of: ":"), let weight = Float(text[text.index(after: colon)...]), colon > text.startIndex else {
            throw CLIError.usage("--lora must be NAME:WEIGHT (a characteristic of the model folder), got '\(text)'")
        }
        return (String(text[..<colon]), weight)
    }

    private func provenance(model: NoduleModelFolder, adapters: [(String, Float)], subtlety: Double?, seed: UInt64,
                            steps: Int, guidance: Float, imagePath: String, radiograph: MedicalImage,
                            center: (x: Double, y: Double), diameter: Double?, maskPath: String?,
                            placement: PatchPlacement, mapping: IntensityMapping, outputs: [String]) throws -> JSONValue {
        func name(_ path: String) -> JSONValue { .string(path.split(separator: "/").last.map(String.init) ?? path) }
        var adapterEntries: [String: JSONValue] = [:]
        for (adapter, weight) in adapters {
            adapterEntries[adapter] = .object(["weight": .number(Double(weight)),
                                               "sha256": .string(try SHA256.digest(ofPath: model.adapterPaths[adapter] ?? ""))])
        }
        return .object([
            "workflow": .string("insert_nodule"),
            "nodus_version": .string(String(cString: nodus_version())),
            "model": .object(["path": .string(model.folder),
                              "dit_sha256": .string(try SHA256.digest(ofPath: model.folder + "/dit")),
                              "vae_sha256": .string(try SHA256.digest(ofPath: model.folder + "/vae")),
                              "standard_size": .number(Double(model.standardSize)),
                              "patch_size": .number(Double(model.patchSize)),
                              "class_label": .number(Double(model.classLabel))]),
            "adapters": .object(adapterEntries),
            "subtlety": subtlety.map { .number($0) } ?? .null,
            "seed": .number(Double(seed)),
            "steps": .number(Double(steps)),
            "scheduler": .string(model.schedulerName),
            "scheduler_config": model.schedulerConfig,
            "guidance_scale": .number(Double(guidance)),
            "input": .object(["path": .string(imagePath), "sha256": .string(try SHA256.digest(ofPath: imagePath)),
                              "width": .number(Double(radiograph.width)), "height": .number(Double(radiograph.height))]),
            "center": .array([.number(center.x), .number(center.y)]),
            "diameter": diameter.map { .number($0) } ?? .null,
            "mask_input": try maskPath.map { .object(["path": .string($0), "sha256": .string(try SHA256.digest(ofPath: $0))]) } ?? .null,
            "patch_origin": .array([.number(Double(placement.origin.column)), .number(Double(placement.origin.row))]),
            "intensity": .object(["lower": .number(mapping.lower), "upper": .number(mapping.upper),
                                  "inverted": .bool(mapping.inverted)]),
            "outputs": .object(["image": name(outputs[0]), "mask": name(outputs[1]), "sidecar": name(outputs[2])]),
        ])
    }
}
