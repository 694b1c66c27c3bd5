/// The key naming of a LoRA file.
///
/// - `peft`: diffusers and PEFT share key names (`<module>.lora_A.weight`,
///   `<module>.lora_B.weight`, optionally prefixed by `transformer.`, `unet.`,
///   `text_encoder.` or PEFT's `base_model.model.`).
/// - `kohya`: kohya-ss / A1111 names (`lora_unet_<module with _>.lora_down.weight`,
///   `.lora_up.weight`, `.alpha`; `lora_te_`, `lora_te1_`, `lora_te2_` for text encoders).
public enum LoRAFormat: String, CaseIterable, Sendable {
    case peft
    case kohya

    /// The lower-case name used by the C ABI, Python and the CLI (`"peft"`, `"kohya"`).
    public var name: String { rawValue }

    public init?(name: String) { self.init(rawValue: name) }
}
