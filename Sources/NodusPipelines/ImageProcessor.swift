import NodusCore

/// diffusers' `VaeImageProcessor` and the pipelines' small tensor steps around the VAE: images
/// [N, H, W, 3] in [0, 1] to [-1, 1] NCHW and back, masks binarized and resized, batches repeated.
enum ImageProcessor {
    /// `tensor / divisor` in float32, as torch divides by a Python float.
    static func divided(_ tensor: Tensor, by divisor: Float) throws -> Tensor {
        let result = try Tensor(shape: tensor.shape, floats: tensor.floatArray())
        for index in 0..<result.elementCount { result.floats[index] /= divisor }
        return result
    }

    /// One item [1, ...] repeated to `batch` items (others pass through).
    static func repeatedBatch(_ tensor: Tensor, to batch: Int) throws -> Tensor {
        tensor.shape[0] == batch ? tensor : try Tensor.concatenatingBatch(Array(repeating: tensor, count: batch))
    }

    /// Masks [N, H, W] or [N, H, W, 1] as diffusers' mask processor makes them: [N, 1, H, W] of 1 where
    /// the mask is at least 0.5, else 0.
    static func binaryMasks(_ mask: Tensor, size: [Int]) throws -> Tensor {
        let values = try mask.finiteFloat32("the mask")
        let shape = values.shape
        guard (shape.count == 3 || (shape.count == 4 && shape[3] == 1)), shape[0] > 0,
              Array(shape[1...2]) == size else {
            throw NodusError.shape("the mask must be [1 or N, \(size[0]), \(size[1])] (or with a last axis of 1), the image's size, got \(shape)")
        }
        let result = try Tensor(zeros: [shape[0], 1, size[0], size[1]])
        for index in 0..<result.elementCount { result.floats[index] = values.floats[index] >= 0.5 ? 1 : 0 }
        return result
    }

    /// `image * (mask < 0.5)`: the pixels to keep, 0 (mid gray) where the mask repaints.
    static func masked(_ pixels: Tensor, by masks: Tensor) throws -> Tensor {
        let (count, channels, height, width) = (pixels.shape[0], pixels.shape[1], pixels.shape[2], pixels.shape[3])
        let items = max(count, masks.shape[0])
        let result = try Tensor(zeros: [items, channels, height, width])
        let plane = height * width
        for item in 0..<items {
            let source = pixels.floats + (count == 1 ? 0 : item) * channels * plane
            let mask = masks.floats + (masks.shape[0] == 1 ? 0 : item) * plane
            for channel in 0..<channels {
                for pixel in 0..<plane {
                    result.floats[(item * channels + channel) * plane + pixel] = mask[pixel] < 0.5
                        ? source[channel * plane + pixel] : 0
                }
            }
        }
        return result
    }

    /// torch's `interpolate(mask, size=...)` (mode "nearest"): [N, 1, H, W] -> [N, 1, h, w].
    static func nearestResized(_ masks: Tensor, to size: [Int]) throws -> Tensor {
        let (count, height, width) = (masks.shape[0], masks.shape[2], masks.shape[3])
        let result = try Tensor(zeros: [count, 1, size[0], size[1]])
        let rowScale = Float(height) / Float(size[0]), columnScale = Float(width) / Float(size[1])
        for item in 0..<count {
            for row in 0..<size[0] {
                let sourceRow = min(Int((Float(row) * rowScale).rounded(.down)), height - 1)
                for column in 0..<size[1] {
                    let sourceColumn = min(Int((Float(column) * columnScale).rounded(.down)), width - 1)
                    result.floats[(item * size[0] + row) * size[1] + column] =
                        masks.floats[(item * height + sourceRow) * width + sourceColumn]
                }
            }
        }
        return result
    }

    /// [N, H, W, 3] in [0, 1] -> [N, 3, H, W] of `2 x - 1` (diffusers' `VaeImageProcessor.preprocess`).
    static func modelImages(_ images: Tensor) throws -> Tensor {
        let (batch, height, width, channels) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let result = try Tensor(zeros: [batch, channels, height, width])
        Layout.transpose(images.floats, result.floats, batch: batch, rows: height * width, columns: channels)
        for index in 0..<result.elementCount { result.floats[index] = 2 * result.floats[index] - 1 }
        return result
    }

    /// [N, 3, H, W] in about [-1, 1] -> [N, H, W, 3] of `(x / 2 + 0.5).clamp(0, 1)`.
    static func displayImages(_ decoded: Tensor) throws -> Tensor {
        let (batch, channels, height, width) = (decoded.shape[0], decoded.shape[1], decoded.shape[2], decoded.shape[3])
        let images = try Tensor(zeros: [batch, height, width, channels])
        Layout.transpose(decoded.floats, images.floats, batch: batch, rows: channels, columns: height * width)
        for index in 0..<images.elementCount { images.floats[index] = min(max(images.floats[index] / 2 + 0.5, 0), 1) }
        return images
    }
}
