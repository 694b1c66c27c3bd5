import NodusCore
import NodusFormats
import NodusGraph

/// Where a model's weights come from, by the names its graph uses: a
/// diffusers folder's safetensors, or an ONNX file's initializers.
protocol WeightSource: AnyObject {
    var names: [String] { get }
    /// Where the weights are, for messages.
    var location: String { get }
    func contains(_ name: String) -> Bool
    /// The weight as float32 (a view when the source holds float32).
    func float32(_ name: String) throws -> Tensor
    /// The weight in the dtype the source holds it in.
    func tensor(_ name: String) throws -> Tensor
    /// How a Linear weight is stored ([out, in] for diffusers files).
    func layout(of name: String) -> WeightLayout
}

extension WeightStore: WeightSource {
    var location: String { directory }
    func float32(_ name: String) throws -> Tensor { try float32(name, shape: nil) }
    func layout(of name: String) -> WeightLayout { .outputsByInputs }
}
