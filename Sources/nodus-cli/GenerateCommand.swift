#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore
import NodusFormats

/// `nodus generate FOLDER --prompt ...`: a diffusers Stable Diffusion pipeline
/// folder from prompt to PNG, over `nodus_pipeline_generate`.
struct GenerateCommand: Command {
    let name = "generate"
    let summary = "Generate images from a prompt with a diffusers Stable Diffusion pipeline folder."
    let positionalUsage = "FOLDER"
    let details = """
        FOLDER holds model_index.json with tokenizer/, text_encoder/, unet/, vae/ and scheduler/, as
        StableDiffusionPipeline.save_pretrained writes it. The same --seed gives the images diffusers
        gives with generator=torch.Generator("cpu").manual_seed(seed).
        --scheduler swaps the folder's scheduler: a diffusers class name (made from the folder's
        scheduler config, as Scheduler.from_config(pipe.scheduler.config) does) or a scheduler folder.
        --lora FILE:WEIGHT loads a LoRA into the UNet and the text encoder (each takes its layers);
        several are combined with their weights, as set_adapters does.
        --image FILE (.npy or .safetensors, float [H, W, 3] or [1, H, W, 3] in [0, 1]) makes it img2img
        (StableDiffusionImg2ImgPipeline, --strength, default 0.8); with --mask FILE too ([H, W] in [0, 1],
        1 = repaint) inpainting (StableDiffusionInpaintPipeline; pass --strength 1 as its default).
        With several images, PNG files get the item's index: out-0.png, out-1.png, ...
        Example: nodus generate sd15/ --prompt "chest x-ray, nodule" --steps 25 --scheduler DPMSolverMultistepScheduler --output cxr.png
        """
    let options: [OptionSpec] = [
        .value("prompt", "TEXT", "the prompt (required)"),
        .value("negative-prompt", "TEXT", "the negative prompt (default: empty)"),
        .value("steps", "N", "inference steps (default 50)"),
        .value("guidance", "G", "classifier-free guidance scale; <= 1 disables it (default 7.5)"),
        .value("seed", "S", "generator seed (default 0)"),
        .value("size", "WxH", "image size in pixels, multiples of 8, or one number for a square (default: the UNet's)"),
        .value("images", "N", "images for the prompt (default 1)"),
        .value("clip-skip", "K", "skip the last K text-encoder layers, as diffusers' clip_skip (default 0)"),
        .value("scheduler", "NAME|PATH", "a diffusers scheduler class name, or a scheduler folder"),
        .value("lora", "FILE:WEIGHT", "a LoRA file or PEFT folder and its weight (default 1)", repeatable: true),
        .value("image", "FILE", "img2img / inpainting: the starting image (see below)"),
        .value("mask", "FILE", "inpainting: the mask, 1 where the image is repainted (needs --image)"),
        .value("strength", "S", "img2img / inpainting strength in [0, 1] (default 0.8)"),
        .value("output", "FILE.png", "the image"),
        .value("npy", "FILE.npy", "the final latents [N, 4, H/8, W/8] instead of images"),
        .value("threads", "N", "worker threads (default: all cores)"),
        ModelHandle.dtypeOption,
    ]

    func run(_ arguments: ParsedArguments) throws {
        let folder = try arguments.positionals(["FOLDER"])[0]
        let prompt = try arguments.required("prompt")
        let imagePath = arguments.value("output")
        let latentPath = arguments.value("npy")
        guard (imagePath != nil) != (latentPath != nil) else {
            throw CLIError.usage("give one of --output FILE.png (images) or --npy FILE.npy (latents)")
        }
        if let imagePath, !imagePath.lowercased().hasSuffix(".png") {
            throw CLIError.usage("--output '\(imagePath)' must end in .png")
        }
        let (width, height) = try GenerateCommand.size(arguments.value("size"))
        let pipeline = try LoadedPipeline(path: folder, threads: Int32(arguments.integer("threads", default: 0, in: 0...4096)),
                                          dtype: arguments.value("dtype") ?? "float32")
        if let scheduler = arguments.value("scheduler") {
            try pipeline.setScheduler(scheduler, folder: folder)
        }
        try pipeline.loadLoRAs(arguments.all("lora"))

        var params = nodus_generate_params()
        nodus_generate_params_init(&params)
        params.steps = Int32(try arguments.integer("steps", default: 50, in: 1...10_000))
        params.guidance_scale = Float(try arguments.number("guidance", default: 7.5))
        params.seed = UInt64(try arguments.integer("seed", default: 0, in: 0...Int.max))
        params.images_per_prompt = Int32(try arguments.integer("images", default: 1, in: 1...1024))
        params.clip_skip = Int32(try arguments.integer("clip-skip", default: 0, in: 0...64))
        (params.width, params.height) = (Int32(width), Int32(height))
        let negative = arguments.value("negative-prompt")
        let start = try arguments.value("image").map {
            try TensorFiles.readTensor($0, name: nil, preferred: "image", option: "image").asFloat32()
        }
        let mask = try arguments.value("mask").map {
            try TensorFiles.readTensor($0, name: nil, preferred: "mask", option: "mask").asFloat32()
        }
        if mask != nil && start == nil { throw CLIError.usage("--mask needs --image") }
        params.strength = try arguments.number("strength", default: 0.8)
        let image = try start.map { $0.rank == 3 ? try $0.reshaped([1] + $0.shape) : $0 }
        let inputs = GenerateCommand.Inputs(image: image,
                                            mask: try mask.map { $0.rank == 2 ? try $0.reshaped([1] + $0.shape) : $0 })

        if let latentPath {
            let latents = try pipeline.generate(params, prompt: prompt, negative: negative, inputs: inputs, output: .latent)
            try NumpyArray.write(latents, to: latentPath)
            StandardStream.output("latents \(latents.shape) -> \(latentPath)\n")
        }
        if let imagePath {
            let images = try pipeline.generate(params, prompt: prompt, negative: negative, inputs: inputs, output: .image)
            let count = images.shape[0]
            for index in 0..<count {
                let target = count == 1 ? imagePath : SampleCommand.indexed(imagePath, index)
                try PNGWriter.writeUnit(images, index: index, to: target)
                StandardStream.output("image \(index) [\(images.shape[1]), \(images.shape[2])] -> \(target)\n")
            }
        }
    }

    /// img2img / inpainting tensors, float32.
    struct Inputs {
        var image: Tensor?
        var mask: Tensor?
    }

    /// `--size`: "WxH" or "N" (a square); 0 x 0 (the pipeline's default) when absent.
    static func size(_ text: String?) throws -> (width: Int, height: Int) {
        guard let text else { return (0, 0) }
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard (parts.count == 1 || parts.count == 2), let width = parts[0], let height = parts.last ?? nil,
              width > 0, height > 0, width <= 16384, height <= 16384 else {
            throw CLIError.usage("--size must be WxH or N in pixels, got '\(text)'")
        }
        return (width, height)
    }
}
