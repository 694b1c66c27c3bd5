import CNodusKernels
import Synchronization

/// 3x3 stride-1 convolutions with zero padding 1 (`nn.Conv2d(c, o, 3, padding=1)`)
/// by Winograd's F(4x4, 3x3) (`Sources/CNodusKernels/winograd.c`): each 4x4
/// block of output costs 36 multiply-adds per channel pair instead of 144.
/// About 2e-6 to 4e-6 relative max error per convolution against float64 on
/// random data, at 16 to 2560 input channels (the direct product: 2e-7 to 1e-6).
///
/// The output channels run in chunks whose transformed weights (4x the size of
/// the weights) fit `ConvolutionShape.winogradWeightBudget`; the tiles run in
/// blocks whose transformed input and products stay within a few times the
/// cache sizes (see `Plan`). Per chunk, the workers transform the weights, then
/// the blocks: either each worker takes whole blocks as they come, in buffers of
/// its own, or every worker works on each block in turn (one transformed input,
/// the output channels split between them).
///
/// Limitations: AVX2 and up (AVX-512 or AVX2 forms of `winograd.c`). The weights are transformed again on every call
/// (nothing is cached): about 3 ms per 512 x 512 channels on one core, 2 to 10%
/// of a VAE decoder's convolution, a quarter at the UNet's 1280 channels.
enum WinogradConvolution {
    static let isSupported = nodus_winograd_supported() != 0

    static let panelChannels = Int(nodus_winograd_panel_channels())
    static let tileColumns = Int(nodus_winograd_tile_columns())

    /// Whether the kernel computes `shape`: nn.Conv2d(kernel_size=3, padding=1), stride 1.
    static func computes(_ shape: ConvolutionShape) -> Bool {
        isSupported && shape.kernelHeight == 3 && shape.kernelWidth == 3 && shape.stride == 1
            && shape.padding == 1 && shape.trailingPadding == 1
    }

    /// 4x4 output tiles over the batch.
    static func tiles(_ shape: ConvolutionShape) -> Int {
        shape.batch * ((shape.height + 3) / 4) * ((shape.width + 3) / 4)
    }

    /// Scratch floats `run` needs, plus slack to align its buffers to 64 bytes.
    static func scratchCount(_ shape: ConvolutionShape) -> Int { Plan(shape).scratchCount + 16 }

    static func run(shape: ConvolutionShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                    scratch: UnsafeMutablePointer<Float>) {
        let plan = Plan(shape)
        let aligned = UnsafeMutableRawPointer(scratch).alignedUp(toMultipleOf: 64).assumingMemoryBound(to: Float.self)
        let buffers = Buffers(transformedWeights: aligned, rest: aligned + plan.weightCount, plan: plan,
                              workers: min(Parallel.threads, plan.workers))
        var first = 0
        while first < shape.outChannels {
            let channels = min(plan.chunkChannels, shape.outChannels - first)
            withUnsafePointer(to: plan.kernelShape(outChannels: channels)) { chunk in
                let part = Part(shape: chunk, input: input, bias: bias.map { $0 + first },
                                output: output + first * shape.height * shape.width)
                let panels = Int(nodus_winograd_panel_count(chunk))
                let chunkWeight = weight + first * shape.inChannels * 9
                Parallel.forEach(panels, costPerItem: panelChannels * shape.inChannels * 36 * 4) { range in
                    _ = nodus_winograd_transform_weights(chunk, chunkWeight, buffers.transformedWeights,
                                                         Int64(range.lowerBound), Int64(range.upperBound))
                }
                if plan.sharesBlocks {
                    runSharingBlocks(part, buffers: buffers)
                } else {
                    runOwnBlocks(part, buffers: buffers)
                }
            }
            first += channels
        }
    }

    /// One chunk of output channels as the kernel sees it.
    private struct Part {
        let shape: UnsafePointer<nodus_winograd_shape>
        let input: UnsafePointer<Float>
        let bias: UnsafePointer<Float>?
        let output: UnsafeMutablePointer<Float>
        var blocks: Int { Int(nodus_winograd_block_count(shape)) }
        var panels: Int { Int(nodus_winograd_panel_count(shape)) }
        var inChannels: Int { Int(shape.pointee.in_channels) }
    }

    /// The scratch: transformed weights, then the transformed inputs and products.
    private struct Buffers {
        let transformedWeights: UnsafeMutablePointer<Float>
        let rest: UnsafeMutablePointer<Float>
        let plan: Plan
        let workers: Int
    }

    /// Each worker takes whole blocks as they come, in its own buffers.
    private static func runOwnBlocks(_ part: Part, buffers: Buffers) {
        let (blocks, panels) = (part.blocks, part.panels)
        let next = Atomic<Int>(0)
        Parallel.forEach(buffers.workers, costPerItem: 1 << 20) { workers in
            for worker in workers {
                let input = buffers.rest + worker * (buffers.plan.inputCount + buffers.plan.productCount)
                let products = input + buffers.plan.inputCount
                while true {
                    let block = next.add(1, ordering: .relaxed).oldValue
                    guard block < blocks else { break }
                    _ = nodus_winograd_transform_input(part.shape, part.input, Int64(block), 0,
                                                       Int64(part.inChannels), input)
                    _ = nodus_winograd_multiply(part.shape, input, buffers.transformedWeights, part.bias,
                                                Int64(block), 0, Int64(panels), products, part.output)
                }
            }
        }
    }

    /// Every worker on each block in turn: the input channels, then the panels,
    /// split between them.
    private static func runSharingBlocks(_ part: Part, buffers: Buffers) {
        let (panels, workers) = (part.panels, buffers.workers)
        let input = buffers.rest
        for block in 0..<part.blocks {
            Parallel.forEach(part.inChannels, costPerItem: 1 << 20) { channels in
                _ = nodus_winograd_transform_input(part.shape, part.input, Int64(block), Int64(channels.lowerBound),
                                                   Int64(channels.upperBound), input)
            }
            Parallel.forEach(workers, costPerItem: 1 << 20) { range in
                for worker in range {
                    let products = input + buffers.plan.inputCount + worker * buffers.plan.productCount
                    _ = nodus_winograd_multiply(part.shape, input, buffers.transformedWeights, part.bias,
                                                Int64(block), Int64(panels * worker / workers),
                                                Int64(panels * (worker + 1) / workers), products, part.output)
                }
            }
        }
    }

    /// How a convolution is cut: output channels per chunk, tiles per block,
    /// whether workers share blocks, and the floats of each buffer.
    private struct Plan {
        let shape: ConvolutionShape
        let chunkChannels: Int
        let blockTiles: Int
        let workers: Int
        let sharesBlocks: Bool
        let weightCount: Int
        let inputCount: Int
        let productCount: Int

        init(_ shape: ConvolutionShape) {
            self.shape = shape
            workers = max(1, shape.winogradWorkers)
            let onePanel = Self.kernelShape(shape, outChannels: panelChannels, blockTiles: tileColumns)
            let panelWeights = withUnsafePointer(to: onePanel) { Int(nodus_winograd_weight_count($0)) }
            let chunkPanels = max(1, shape.winogradWeightBudget / panelWeights)
            chunkChannels = min(shape.outChannels, chunkPanels * panelChannels)
            // Every block streams the transformed weights once, while its own buffers (the
            // transformed input and products) are written and read back: small blocks keep
            // those in L2, large blocks read the weights less often. Weights that stay in
            // the 32 MB L3 beside the buffers (up to 12 MB: 256 x 256 channels) want blocks
            // of 64 tiles, each worker its own; larger weights 256 tiles, the workers sharing
            // each block (one transformed input, the panels split: half the buffers, about
            // as fast). On 2 Zen 5 cores (ms, 64 tiles each worker's own / 256 shared):
            // 128 -> 128 channels at 512 x 512 76 / 109, 256 -> 128 at 512 x 512 145 / 187,
            // 256 -> 256 at 256 x 256 73 / 72, 512 -> 256 at 256 x 256 175 / 136,
            // 512 -> 512 at 128 x 128 92 / 63.
            let chunkPanelCount = (chunkChannels + panelChannels - 1) / panelChannels
            let largeWeights = chunkPanelCount * panelWeights * MemoryLayout<Float>.size > 12 << 20
            let tiles = WinogradConvolution.tiles(shape)
            blockTiles = min(largeWeights ? 256 : 64, (tiles + tileColumns - 1) / tileColumns * tileColumns)
            let chunk = Self.kernelShape(shape, outChannels: chunkChannels, blockTiles: blockTiles)
            let (weights, blocks, input) = withUnsafePointer(to: chunk) {
                (Int(nodus_winograd_weight_count($0)), Int(nodus_winograd_block_count($0)),
                 Int(nodus_winograd_input_count($0)))
            }
            // Fewer blocks than two per worker would leave workers idle at the end.
            sharesBlocks = largeWeights || blocks < 2 * workers
            let productPanels = sharesBlocks ? (chunkPanelCount + workers - 1) / workers : chunkPanelCount
            weightCount = weights
            inputCount = input
            productCount = withUnsafePointer(to: chunk) { Int(nodus_winograd_product_count($0, Int64(productPanels))) }
        }

        /// Floats of the transformed weights, then the input and product buffers.
        var scratchCount: Int {
            sharesBlocks ? weightCount + inputCount + workers * productCount
                         : weightCount + workers * (inputCount + productCount)
        }

        func kernelShape(outChannels: Int) -> nodus_winograd_shape {
            Self.kernelShape(shape, outChannels: outChannels, blockTiles: blockTiles)
        }

        private static func kernelShape(_ shape: ConvolutionShape, outChannels: Int,
                                        blockTiles: Int) -> nodus_winograd_shape {
            nodus_winograd_shape(
                batch: Int64(shape.batch), in_channels: Int64(shape.inChannels), out_channels: Int64(outChannels),
                height: Int64(shape.height), width: Int64(shape.width),
                output_image_stride: Int64(shape.outChannels * shape.height * shape.width),
                block_tiles: Int64(blockTiles))
        }
    }
}
