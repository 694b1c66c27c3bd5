/// A model conditioned on class labels with a classifier-free-guidance null class.
public protocol ClassConditionedModel: DiffusionModel {
    /// The label that means "no class" (DiT: `num_embeds_ada_norm`).
    var nullClassLabel: Int64 { get }
}
