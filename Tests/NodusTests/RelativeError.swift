import NodusCore

/// The relative max error max|ours - reference| / max|reference| (SPEC section 5);
/// infinity when the shapes differ.
func relativeError(_ ours: Tensor, _ reference: Tensor) -> Float {
    guard ours.shape == reference.shape else { return .infinity }
    let a = ours.floatArray(), b = reference.floatArray()
    var difference: Float = 0, scale: Float = 0
    for index in 0..<b.count {
        difference = max(difference, abs(a[index] - b[index]))
        scale = max(scale, abs(b[index]))
    }
    return difference / scale
}
