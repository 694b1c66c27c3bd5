import NodusCore

/// One low-rank update of one Linear (or 1x1 convolution) in normalised form:
/// `delta W = scale * up * down`, applied by the model side as `scale * B (A x)`.
///
/// `down` and `up` are float32. When the file stores aligned F32 they are zero-copy
/// views of the read-only file mapping: **never write them**. F16 / BF16 / F64 tensors
/// are converted copies.
public struct LoRALayer: Sendable {
    /// The module path in the file's naming, prefixes removed: "transformer_blocks.0.attn1.to_q",
    /// kohya's underscored form "transformer_blocks_0_attn1_to_q", or original-DiT "blocks.0.attn.qkv"
    /// (a fused qkv Linear: `up` is [3 * hidden, rank]; the model side splits it).
    public var module: String
    /// "transformer", "unet", "text_encoder", or "" when the file has no prefix.
    /// kohya's `lora_unet_` is "unet" whatever the denoiser is; every text-encoder prefix
    /// (`text_encoder.`, `text_encoder_2.`, `lora_te_`, `lora_te1_`, `lora_te2_`, `lora_te3_`)
    /// is "text_encoder", so callers can report those layers as not applying.
    public var component: String
    /// A (`lora_A` / `lora_down`), float32 [rank, in]. A 1x1 convolution's [rank, in, 1, 1] is reshaped.
    public var down: Tensor
    /// B (`lora_B` / `lora_up`), float32 [out, rank]. A 1x1 convolution's [out, rank, 1, 1] is reshaped.
    public var up: Tensor
    /// A's first dimension (equal to B's second).
    public var rank: Int
    /// As stored (kohya `.alpha`, or from the LoraConfig's `lora_alpha` / `alpha_pattern`);
    /// nil when the file gives none.
    public var alpha: Float?
    /// The per-layer scale: alpha / rank (rsLoRA: alpha / sqrt(rank)); 1 when there is no alpha.
    public var scale: Float
    /// The file's key of `down` (e.g. "transformer.x.lora_A.weight"), for messages and reports.
    public var downKey: String
    /// The file's key of `up`.
    public var upKey: String

    public init(module: String, component: String, down: Tensor, up: Tensor, rank: Int, alpha: Float?,
                scale: Float, downKey: String = "", upKey: String = "") {
        self.module = module
        self.component = component
        self.down = down
        self.up = up
        self.rank = rank
        self.alpha = alpha
        self.scale = scale
        self.downKey = downKey
        self.upKey = upKey
    }

    /// The input features (A's second dimension).
    public var inFeatures: Int { down.shape.count == 2 ? down.shape[1] : 0 }
    /// The output features (B's first dimension).
    public var outFeatures: Int { up.shape.count == 2 ? up.shape[0] : 0 }
}
