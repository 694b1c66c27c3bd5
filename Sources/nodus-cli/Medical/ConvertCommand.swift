import NodusCore
import NodusFormats

/// `nodus convert`: between DICOM, gray PNG, NIfTI-1 and .npy, with windows,
/// Hounsfield mapping, voxel geometry and mid-plane previews.
struct ConvertCommand: Command {
    let name = "convert"
    let summary = "Convert medical images and volumes between DICOM, PNG (8/16-bit gray), NIfTI and .npy."
    let positionalUsage = "INPUT OUTPUT"
    let details = """
    INPUT is a DICOM file (.dcm, or any file with the DICM marker), a gray PNG, a NIfTI-1 \
    volume (.nii, .nii.gz) or an .npy array ([H, W] an image; [D, H, W] or [C, D, H, W] a volume). \
    OUTPUT's extension chooses what is written:
      .png     the image (a volume's --plane slice) in --window, 8-bit unless --bits 16;
               --window none writes the stored values instead
      .dcm     a derived image of --source: its patient, study and series modules, new UIDs,
               ImageType DERIVED\\SECONDARY, marked synthetic (ImageComments, BurnedInAnnotation NO);
               PNG samples are stored values unless --window says which window they show
      .nii.gz  NIfTI-1 through niftilib (a 2-D image as one slice), geometry from --spacing /
               --origin / --affine or the input's, values through --hounsfield
      .npy     float32 values (modality values: HU for CT); of a volume, its --plane / --slice if given
    Every output is written atomically: on any error nothing is left under its name.

    examples:
      nodus convert cxr.dcm cxr.png                       # the file's own window, 8-bit
      nodus convert ct.dcm lung.png --window lung --bits 16
      nodus convert edited.png derived.dcm --source cxr.dcm
      nodus convert volume.npy ct.nii.gz --spacing 1.5,1.5,2 --hounsfield maisi --previews ct --window lung
      nodus convert ct.nii.gz slice.png --plane axial --slice 40 --window soft-tissue
    """
    let options: [OptionSpec] = [
        .value("window", "W", WindowChoice.help),
        .value("bits", "8|16", "bit depth of a PNG output (default 8; the stored depth with --window none)"),
        .value("source", "FILE", "the DICOM file a .dcm output is derived from (required for .dcm)"),
        .value("description", "TEXT", "the derived DICOM's DerivationDescription"),
        .value("series-description", "TEXT", "the derived DICOM's SeriesDescription (default 'Nodus synthetic')"),
        .value("spacing", "X,Y,Z", "voxel size in mm along width, height and depth (NIfTI output)"),
        .value("origin", "X,Y,Z", "world position in mm of the first voxel (NIfTI output; default 0,0,0)"),
        .value("affine", "A00,...,A33", "a full voxel-to-world affine, 16 numbers row-major (instead of --spacing/--origin)"),
        .value("hounsfield", "maisi|L,H,HL,HH", "map values [L, H] to Hounsfield units [HL, HH], clipped ('maisi': 0,1,-1000,1000)"),
        .value("datatype", "int16|float32", "NIfTI data type (default int16 with --hounsfield, else float32)"),
        .value("previews", "PREFIX", "also write PREFIX-axial.png, PREFIX-coronal.png, PREFIX-sagittal.png of a volume in --window"),
        .value("plane", "axial|coronal|sagittal", "the plane of a volume sliced for a 2-D output (default axial)"),
        .value("slice", "N", "the slice index of a volume for a 2-D output (default the middle)"),
        .value("channel", "N", "the channel of a multi-channel volume for 2-D outputs and previews (default 0)"),
    ]

    /// What was read: a 2-D image or a volume.
    enum Content {
        case image(MedicalImage)
        case volume(Volume)
    }

    func run(_ arguments: ParsedArguments) throws {
        let paths = try arguments.positionals(["INPUT", "OUTPUT"])
        let (input, output) = (paths[0], paths[1])
        let inputKind = try MedicalFileKind.of(input, isInput: true)
        let outputKind = try MedicalFileKind.of(output, isInput: false)
        let window = try WindowChoice.parse(arguments.value("window") ?? "file")
        var content = try read(input, kind: inputKind)
        if let text = arguments.value("hounsfield") {
            let mapping = try HounsfieldMapping.parse(text)
            switch content {
            case .image(var image):
                image.values = image.values.map(mapping.hounsfield)
                image.storage = nil
                content = .image(image)
            case .volume(let volume): content = .volume(mapping.apply(to: volume))
            }
        }
        switch outputKind {
        case .png: try writePNG(content, inputKind: inputKind, window: window, arguments: arguments, to: output)
        case .dicom: try writeDICOM(content, inputKind: inputKind, input: input, window: window, arguments: arguments, to: output)
        case .nifti: try writeNIfTI(content, arguments: arguments, to: output)
        case .npy:
            if case .volume(let volume) = content, arguments.value("plane") == nil, arguments.value("slice") == nil {
                try NumpyArray.write(volume.tensor(), to: output)
            } else {
                let image = try image(of: content, arguments: arguments)
                try NumpyArray.write(Tensor(shape: [image.height, image.width], floats: image.values), to: output)
            }
        }
        if let prefix = arguments.value("previews") {
            guard case .volume(let volume) = content else {
                throw CLIError.usage("--previews needs a volume input (NIfTI or a 3-D .npy)")
            }
            let channel = try arguments.integer("channel", default: 0, in: 0...(volume.channels - 1))
            guard let transform = window.transform(for: wholeVolumeImage(volume, channel: channel)) else {
                throw CLIError.usage("--previews needs a window, not --window none")
            }
            try VolumePreview.writeMidPlanes(of: volume, transform: transform, prefix: prefix, channel: channel)
        }
    }

    /// The whole of one channel as one image, so 'range' and 'file' previews use
    /// the volume's range rather than one plane's.
    private func wholeVolumeImage(_ volume: Volume, channel: Int) -> MedicalImage {
        let count = volume.depth * volume.height * volume.width
        return MedicalImage(width: count, height: 1, values: Array(volume.values[channel * count..<(channel + 1) * count]))
    }

    private func read(_ path: String, kind: MedicalFileKind) throws -> Content {
        switch kind {
        case .dicom: return .image(try DICOMReader.read(path))
        case .png: return .image(try GrayscalePNG.read(path))
        case .nifti: return .volume(try NIfTIReader.read(path))
        case .npy:
            let tensor = try NumpyArray.read(path: path)
            if tensor.shape.count == 2 {
                return .image(MedicalImage(width: tensor.shape[1], height: tensor.shape[0], values: tensor.floatArray()))
            }
            return .volume(try Volume(tensor: tensor))
        }
    }

    /// The 2-D image of `content`: the image, or the chosen slice of a volume.
    private func image(of content: Content, arguments: ParsedArguments) throws -> MedicalImage {
        switch content {
        case .image(let image): return image
        case .volume(let volume):
            let planeName = arguments.value("plane") ?? "axial"
            guard let plane = Volume.Plane(rawValue: planeName) else {
                throw CLIError.usage("--plane must be axial, coronal or sagittal, got '\(planeName)'")
            }
            let slice = arguments.value("slice") == nil ? nil : try arguments.integer("slice", default: 0, in: 0...Int(Int32.max))
            let channel = try arguments.integer("channel", default: 0, in: 0...(volume.channels - 1))
            return try volume.slice(plane, index: slice, channel: channel)
        }
    }

    private func writePNG(_ content: Content, inputKind: MedicalFileKind, window: WindowChoice,
                          arguments: ParsedArguments, to path: String) throws {
        let image = try image(of: content, arguments: arguments)
        guard let transform = window.transform(for: image) else {
            // --window none: the stored values themselves.
            guard let storage = image.storage, !storage.isSigned, storage.bitsStored <= 16 else {
                throw CLIError.usage("--window none writes stored values, and this \(inputKind.rawValue) image has "
                    + (image.storage == nil ? "float values" : "signed stored values") + "; choose a window")
            }
            let bits = try arguments.integer("bits", default: storage.bitsAllocated, in: 8...16)
            guard bits == 8 || bits == 16, storage.bitsStored <= bits else {
                throw CLIError.usage("--bits \(bits) cannot hold \(storage.bitsStored)-bit stored values (use 16)")
            }
            let samples = image.storedValues(in: storage).map { UInt16(truncatingIfNeeded: $0) }
            try GrayscalePNG.write(samples: samples, width: image.width, height: image.height, bitDepth: bits, to: path)
            return
        }
        let bits = try arguments.integer("bits", default: 8, in: 8...16)
        guard bits == 8 || bits == 16 else { throw CLIError.usage("--bits must be 8 or 16, got \(bits)") }
        try GrayscalePNG.write(image, transform: transform, bitDepth: bits, to: path)
    }

    private func writeDICOM(_ content: Content, inputKind: MedicalFileKind, input: String, window: WindowChoice,
                            arguments: ParsedArguments, to path: String) throws {
        guard let source = arguments.value("source") else {
            throw CLIError.usage("a .dcm output is a derived image: name its source DICOM with --source")
        }
        var image = try image(of: content, arguments: arguments)
        if inputKind == .png, let pngStorage = image.storage {
            let sourceImage = try DICOMReader.read(source)
            guard let sourceStorage = sourceImage.storage else {
                throw CLIError.failure("'\(source)' has no stored pixel format")
            }
            switch window {
            case .file, .none:
                // The PNG holds stored values of the source's format (a --window none export).
                let stored = image.storedValues(in: pngStorage)
                if let outside = stored.first(where: { !sourceStorage.storedRange.contains($0) }) {
                    throw CLIError.failure("'\(input)' has sample \(outside), outside the \(sourceStorage.bitsStored)-bit "
                        + "stored range of '\(source)'; if the PNG shows a window, say which with --window")
                }
                image.values = stored.map { sourceStorage.value(ofStored: $0) }
            case .range, .window:
                // The PNG shows brightness in a window: back to modality values.
                let maximum = Float((1 << pngStorage.bitsAllocated) - 1)
                let transform = window.transform(for: sourceImage) ?? sourceImage.defaultDisplayTransform
                image.values = try MedicalImage.values(ofDisplay: image.values.map { $0 / maximum }, transform: transform,
                                                       photometric: sourceImage.photometric)
            }
        }
        let description = arguments.value("description")
            ?? "Converted by nodus convert from \(String(input.split(separator: "/").last ?? Substring(input)))"
        var writer = DerivedDICOMWriter(derivationDescription: description)
        if let series = arguments.value("series-description") { writer.seriesDescription = series }
        try writer.write(image, derivedFrom: source, to: path)
    }

    private func writeNIfTI(_ content: Content, arguments: ParsedArguments, to path: String) throws {
        var volume: Volume
        switch content {
        case .image(let image): volume = try Volume(image: image)
        case .volume(let read): volume = read
        }
        if let affineText = arguments.value("affine") {
            guard arguments.value("spacing") == nil, arguments.value("origin") == nil else {
                throw CLIError.usage("give --affine or --spacing / --origin, not both")
            }
            volume.geometry = try VolumeGeometry(affine: try numbers(affineText, count: 16, option: "affine"))
        } else if arguments.value("spacing") != nil || arguments.value("origin") != nil {
            let spacing = try arguments.value("spacing").map { try numbers($0, count: 3, option: "spacing") }
                ?? [volume.geometry.spacing.x, volume.geometry.spacing.y, volume.geometry.spacing.z]
            guard spacing.allSatisfy({ $0 > 0 }) else { throw CLIError.usage("--spacing must be positive") }
            let origin = try arguments.value("origin").map { try numbers($0, count: 3, option: "origin") }
                ?? [volume.geometry.affine[3], volume.geometry.affine[7], volume.geometry.affine[11]]
            volume.geometry = VolumeGeometry(spacing: (spacing[0], spacing[1], spacing[2]), origin: (origin[0], origin[1], origin[2]))
        }
        var writer = NIfTIWriter()
        switch arguments.value("datatype") ?? (arguments.value("hounsfield") != nil ? "int16" : "float32") {
        case "int16": writer.dataType = .int16
        case "float32": writer.dataType = .float32
        case let other: throw CLIError.usage("--datatype must be int16 or float32, got '\(other)'")
        }
        try writer.write(volume, to: path)
    }

    /// `count` comma-separated finite numbers.
    private func numbers(_ text: String, count: Int, option: String) throws -> [Double] {
        let values = text.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: " ")) }
        guard values.count == count, values.allSatisfy(\.isFinite) else {
            throw CLIError.usage("--\(option) needs \(count) comma-separated numbers, got '\(text)'")
        }
        return values
    }
}
