// Qwen3-VL's vision tower (`Qwen3VLMoeVisionModel.forward`), block by block:
//   patch_embed:   Conv3d with kernel = stride = [temporal, patch, patch] over each flattened
//                  patch = a linear map of its 3·2·16·16 values (+ bias)
//   pos_embed:     the learned side×side table bilinearly resampled (align_corners) to the
//                  image's patch grid, patches in spatial-merge-block order
//                  (`get_vision_interpolation_indices_and_weights`)
//   rotary:        2-D axial rope: head_dim/4 frequencies turn with the patch row, the next
//                  head_dim/4 with its column, rotate-half over the whole head
//   blocks:        x += proj(attn(rope(qkv(LN1(x))))) within each image (bidirectional);
//                  x += fc2(gelu_tanh(fc1(LN2(x))))
//   deepstack:     after block deepstack_visual_indexes[j], merger_j(x) with the LayerNorm
//                  over the 4 merged patches (use_postshuffle_norm)
//   merger:        LN per patch, 4 consecutive patches concatenated, fc1 → GELU → fc2 to the
//                  text hidden size
// It runs on the coordinator; its outputs replace the image tokens' embeddings and feed
// DeepStack in the text model (DecoderModel.forwardStep).

import Foundation
import JindouNumerics

/// An image's patch grid as the processor made it: temporal × height × width patches.
public struct ImageGrid: Sendable, Equatable, Codable {
    public var t: Int
    public var h: Int
    public var w: Int

    public init(t: Int, h: Int, w: Int) {
        self.t = t
        self.h = h
        self.w = w
    }

    public var patchCount: Int { t * h * w }
}

/// One preprocessed image: flattened patches (`grid.patchCount` rows of
/// channels × temporal × patch × patch floats, in the processor's order) and its grid.
public struct PixelPatches: Sendable {
    public var values: [Float]
    public var grid: ImageGrid

    public init(values: [Float], grid: ImageGrid) {
        self.values = values
        self.grid = grid
    }
}

/// The tower's outputs for a list of images, concatenated in image order: merged
/// features (one row of text-hidden floats per image token) and each DeepStack level.
public struct VisionFeatures: Sendable {
    public var tokens: Int
    public var embeddings: [Float]
    public var deepstack: [[Float]]
}

public enum VisionError: Error, Equatable, CustomStringConvertible {
    case badPatches(image: Int, reason: String)
    case tokenMismatch(reason: String)

    public var description: String {
        switch self {
        case .badPatches(let image, let reason): "image \(image): \(reason)"
        case .tokenMismatch(let reason): reason
        }
    }
}

struct LayerNormWeights: Sendable {
    let weight: [Float]
    let bias: [Float]
}

struct PatchMerger: Sendable {
    let norm: LayerNormWeights
    let fc1: WeightMatrix
    let fc1Bias: [Float]
    let fc2: WeightMatrix
    let fc2Bias: [Float]
    /// LayerNorm over the 4 concatenated patches (DeepStack mergers) rather than per patch.
    let postShuffleNorm: Bool
}

struct VisionBlock: Sendable {
    let norm1: LayerNormWeights
    let norm2: LayerNormWeights
    let qkv: WeightMatrix
    let qkvBias: [Float]
    let projection: WeightMatrix
    let projectionBias: [Float]
    let fc1: WeightMatrix
    let fc1Bias: [Float]
    let fc2: WeightMatrix
    let fc2Bias: [Float]
}

/// The vision tower's weights and forward pass: Qwen3-VL's (`model.visual.*`) or
/// Kimi-K2.5's MoonViT (`vision_tower.*` + `mm_projector.*`, MoonViT.swift's comment).
public struct VisionTower: Sendable {
    public let shape: VisionTowerShape
    let patchEmbedding: WeightMatrix
    let patchEmbeddingBias: [Float]
    let positionTable: [Float]
    let blocks: [VisionBlock]
    /// MoonViT's `final_layernorm` after the blocks; nil for Qwen3-VL.
    let finalNorm: LayerNormWeights?
    let merger: PatchMerger
    let deepstackMergers: [PatchMerger]
    let rotary: RotaryEmbedding
    public let tensors: TensorSet

    static let prefix = "model.visual."

    static func tensorRequests(_ v: VisionTowerShape) -> [TensorRequest] {
        if v.kind == .moonViT { return MoonViT.tensorRequests(v) }
        let p = prefix, d = v.hiddenSize, merged = d * v.spatialMergeSize * v.spatialMergeSize
        func linear(_ name: String, _ rows: Int, _ columns: Int) -> [TensorRequest] {
            [TensorRequest(name + ".weight", shape: [rows, columns]), TensorRequest(name + ".bias", shape: [rows])]
        }
        func norm(_ name: String, _ width: Int) -> [TensorRequest] {
            [TensorRequest(name + ".weight", shape: [width]), TensorRequest(name + ".bias", shape: [width])]
        }
        func merger(_ name: String, postShuffle: Bool) -> [TensorRequest] {
            norm(name + ".norm", postShuffle ? merged : d) + linear(name + ".linear_fc1", merged, merged)
                + linear(name + ".linear_fc2", v.outHiddenSize, merged)
        }
        var requests = [
            TensorRequest(p + "patch_embed.proj.weight",
                          shape: [d, v.inChannels, v.temporalPatchSize, v.patchSize, v.patchSize]),
            TensorRequest(p + "patch_embed.proj.bias", shape: [d]),
            TensorRequest(p + "pos_embed.weight", shape: [v.positionEmbeddings, d]),
        ]
        for b in 0..<v.depth {
            let q = p + "blocks.\(b)."
            requests += norm(q + "norm1", d) + norm(q + "norm2", d) + linear(q + "attn.qkv", 3 * d, d)
                + linear(q + "attn.proj", d, d) + linear(q + "mlp.linear_fc1", v.intermediateSize, d)
                + linear(q + "mlp.linear_fc2", d, v.intermediateSize)
        }
        requests += merger(p + "merger", postShuffle: false)
        for j in v.deepstackIndexes.indices { requests += merger(p + "deepstack_merger_list.\(j)", postShuffle: true) }
        return requests
    }

    public init(shape v: VisionTowerShape, checkpoint: any WeightSource) throws {
        let tensors = try checkpoint.load(Self.tensorRequests(v))
        let names = VisionTensorNames(v)
        func matrix(_ name: String, as shape: [Int]? = nil) throws -> WeightMatrix {
            try tensors.matrix(name, quantization: nil, as: shape)
        }
        func vector(_ name: String) throws -> [Float] {
            guard let t = tensors[name] else { throw CheckpointError.missingTensor(tensor: name, searched: []) }
            return try t.floats()
        }
        func norm(_ name: String) throws -> LayerNormWeights {
            LayerNormWeights(weight: try vector(name + ".weight"), bias: try vector(name + ".bias"))
        }
        func loadMerger(_ m: VisionTensorNames.Merger, postShuffle: Bool) throws -> PatchMerger {
            PatchMerger(norm: try norm(m.norm), fc1: try matrix(m.fc1 + ".weight"), fc1Bias: try vector(m.fc1 + ".bias"),
                        fc2: try matrix(m.fc2 + ".weight"), fc2Bias: try vector(m.fc2 + ".bias"), postShuffleNorm: postShuffle)
        }
        shape = v
        self.tensors = tensors
        patchEmbedding = try matrix(names.patchEmbedding + ".weight", as: [v.hiddenSize, v.patchFeatures])
        patchEmbeddingBias = try vector(names.patchEmbedding + ".bias")
        positionTable = try vector(names.positionTable)
        blocks = try (0..<v.depth).map { b in
            let q = names.block(b)
            var qkv = try matrix(q.qkv + ".weight"), qkvBias = try vector(q.qkv + ".bias")
            if v.kind == .moonViT {
                // The Hub's wqkv keeps q and k in complex-pair rotary order; transformers'
                // conversion (PermuteForRope) reorders them to rotate-half order, as here.
                (qkv, qkvBias) = try MoonViT.rotateHalfOrder(qkv: tensors[q.qkv + ".weight"]!.floats(), bias: qkvBias, shape: v)
            }
            return VisionBlock(
                norm1: try norm(q.norm1), norm2: try norm(q.norm2), qkv: qkv, qkvBias: qkvBias,
                projection: try matrix(q.projection + ".weight"), projectionBias: try vector(q.projection + ".bias"),
                fc1: try matrix(q.fc1 + ".weight"), fc1Bias: try vector(q.fc1 + ".bias"),
                fc2: try matrix(q.fc2 + ".weight"), fc2Bias: try vector(q.fc2 + ".bias"))
        }
        finalNorm = try names.finalNorm.map { try norm($0) }
        merger = try loadMerger(names.merger, postShuffle: false)
        deepstackMergers = try v.deepstackIndexes.indices.map { try loadMerger(names.deepstackMerger($0), postShuffle: true) }
        let d = v.headDimension
        switch v.kind {
        case .qwen3VL:
            // compute_axial_rope_parameters: head_dim/4 frequencies over spatial_dim = head_dim/2,
            // used once for rows and once for columns; rotate-half over the whole head.
            let axial = RotaryEmbedding(headDimension: d / 2, rotaryDimension: d / 2, base: v.ropeTheta).inverseFrequencies
            rotary = RotaryEmbedding(headDimension: d, rotaryDimension: d, base: v.ropeTheta, inverseFrequencies: axial + axial,
                                     frequencyAxes: Array(repeating: 1, count: d / 4) + Array(repeating: 2, count: d / 4))
        case .moonViT:
            rotary = MoonViT.rotary(v)
        }
    }

    /// Image tokens an image of `grid` becomes in the prompt.
    public func tokenCount(_ grid: ImageGrid) -> Int { grid.patchCount / (shape.spatialMergeSize * shape.spatialMergeSize) }

    /// Checks a preprocessed image against this tower.
    public func validate(_ images: [PixelPatches]) throws {
        let m = shape.spatialMergeSize
        for (i, image) in images.enumerated() {
            let g = image.grid
            guard g.t >= 1, g.h >= m, g.w >= m, g.h % m == 0, g.w % m == 0 else {
                throw VisionError.badPatches(image: i, reason: "grid \(g.t)×\(g.h)×\(g.w) is not a positive multiple of the merge size \(m)")
            }
            guard shape.kind == .qwen3VL || g.t == 1 else {
                throw VisionError.badPatches(image: i, reason: "MoonViT takes still images (t = 1); video clips are not supported")
            }
            guard image.values.count == g.patchCount * shape.patchFeatures else {
                throw VisionError.badPatches(image: i, reason: "\(image.values.count) values for \(g.patchCount) patches of \(shape.patchFeatures)")
            }
        }
    }

    /// `Qwen3VLMoeVisionModel.forward` (or `Kimi_K25Model.get_image_features`) over
    /// `images` (each attends only within itself).
    public func encode(_ images: [PixelPatches]) throws -> VisionFeatures {
        try validate(images)
        let d = shape.hiddenSize, m = shape.spatialMergeSize
        let total = images.reduce(0) { $0 + $1.grid.patchCount }
        var x = [Float](repeating: 0, count: total * d)
        var rowPositions = [SIMD3<Int>]()
        rowPositions.reserveCapacity(total)
        var spans: [Range<Int>] = []
        var start = 0
        // patch_embed + pos_embed, per image.
        for image in images {
            let n = image.grid.patchCount
            let embedded = affine(image.values, rows: n, weight: patchEmbedding, bias: patchEmbeddingBias)
            x.replaceSubrange((start * d)..<((start + n) * d), with: embedded)
            let positions = shape.kind == .qwen3VL ? blockOrderPositions(image.grid) : rasterPositions(image.grid)
            addPositionEmbeddings(positions: positions, grid: image.grid, into: &x, from: start)
            rowPositions += positions.map { SIMD3(0, $0.row, $0.column) }
            spans.append(start..<(start + n))
            start += n
        }
        var deepstack: [[Float]] = []
        for (b, block) in blocks.enumerated() {
            // x += attn(norm1(x))
            var normed = layerNormed(x, block.norm1, rows: total)
            let attended = attention(block, input: &normed, rows: total, positions: rowPositions, spans: spans)
            add(attended, into: &x)
            // x += mlp(norm2(x))
            var hiddenMLP = affine(layerNormed(x, block.norm2, rows: total), rows: total, weight: block.fc1, bias: block.fc1Bias)
            hiddenMLP.withUnsafeMutableBufferPointer {
                gelu($0.baseAddress!, count: $0.count, tanhApproximation: shape.activation == "gelu_pytorch_tanh")
            }
            add(affine(hiddenMLP, rows: total, weight: block.fc2, bias: block.fc2Bias), into: &x)
            if let level = shape.deepstackIndexes.firstIndex(of: b) {
                deepstack.append(merge(x, rows: total, with: deepstackMergers[level]))
            }
        }
        if let finalNorm {
            // MoonViT: final_layernorm, then the 2×2 patches of each merged token made
            // consecutive (`temporal_merge` of a single frame) for the projector.
            x = mergeBlockOrder(layerNormed(x, finalNorm, rows: total), images: images)
        }
        return VisionFeatures(tokens: total / (m * m), embeddings: merge(x, rows: total, with: merger), deepstack: deepstack)
    }

    // MARK: - Blocks

    /// Patch (row, column) in the processor's spatial-merge-block order.
    private func blockOrderPositions(_ grid: ImageGrid) -> [(row: Int, column: Int)] {
        let m = shape.spatialMergeSize
        var positions: [(row: Int, column: Int)] = []
        positions.reserveCapacity(grid.patchCount)
        for _ in 0..<grid.t {
            for blockRow in 0..<(grid.h / m) {
                for blockColumn in 0..<(grid.w / m) {
                    for inRow in 0..<m {
                        for inColumn in 0..<m { positions.append((blockRow * m + inRow, blockColumn * m + inColumn)) }
                    }
                }
            }
        }
        return positions
    }

    /// Patch (row, column) in raster order (MoonViT).
    private func rasterPositions(_ grid: ImageGrid) -> [(row: Int, column: Int)] {
        (0..<grid.t).flatMap { _ in (0..<grid.h).flatMap { r in (0..<grid.w).map { (r, $0) } } }
    }

    /// Rows of raster-ordered images regrouped so each merged token's m×m patches are
    /// consecutive (row-major within the block), blocks in raster order.
    private func mergeBlockOrder(_ x: [Float], images: [PixelPatches]) -> [Float] {
        let d = shape.hiddenSize, m = shape.spatialMergeSize
        var out = [Float](repeating: 0, count: x.count)
        var start = 0, row = 0
        for image in images {
            let g = image.grid
            for blockRow in 0..<(g.h / m) {
                for blockColumn in 0..<(g.w / m) {
                    for inRow in 0..<m {
                        for inColumn in 0..<m {
                            let source = start + (blockRow * m + inRow) * g.w + blockColumn * m + inColumn
                            out.replaceSubrange((row * d)..<((row + 1) * d), with: x[(source * d)..<((source + 1) * d)])
                            row += 1
                        }
                    }
                }
            }
            start += g.patchCount
        }
        return out
    }

    /// The learned table resampled to the image's grid, as
    /// `_interpolation_axis_taps_weights`: bilinear with align_corners (Qwen3-VL) or
    /// bicubic (Keys, a = −0.75) with half-pixel centres (MoonViT), taps clamped to the border.
    private func addPositionEmbeddings(positions: [(row: Int, column: Int)], grid: ImageGrid, into x: inout [Float], from start: Int) {
        let side = shape.positionGridSide, d = shape.hiddenSize
        let bicubic = shape.kind == .moonViT
        func taps(_ index: Int, _ size: Int) -> [(Int, Float)] {
            let source = bicubic ? (Float(index) + 0.5) * Float(side) / Float(size) - 0.5
                : Float(index) * Float(side - 1) / Float(max(size - 1, 1))
            let floor = source.rounded(.down)
            return (bicubic ? -1..<3 : 0..<2).map { offset in
                let tap = min(max(Int(floor) + offset, 0), side - 1)
                let distance = abs(source - floor - Float(offset))
                guard bicubic else { return (tap, max(1 - distance, 0)) }
                let a: Float = -0.75
                let near = ((a + 2) * distance - (a + 3)) * distance * distance + 1
                let far = ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a
                return (tap, distance <= 1 ? near : far)
            }
        }
        x.withUnsafeMutableBufferPointer { out in
            positionTable.withUnsafeBufferPointer { table in
                for (i, position) in positions.enumerated() {
                    let target = out.baseAddress! + (start + i) * d
                    var sum = [Float](repeating: 0, count: d)
                    for (hTap, hWeight) in taps(position.row, grid.h) {
                        for (wTap, wWeight) in taps(position.column, grid.w) {
                            let weight = hWeight * wWeight
                            let row = table.baseAddress! + (hTap * side + wTap) * d
                            for c in 0..<d { sum[c] += row[c] * weight }
                        }
                    }
                    for c in 0..<d { target[c] += sum[c] }
                }
            }
        }
    }

    /// `Qwen3VLMoeVisionAttention`: qkv, 2-D rope on q and k, softmax attention over the
    /// patches of the same image, proj.
    private func attention(_ block: VisionBlock, input: inout [Float], rows: Int, positions: [SIMD3<Int>], spans: [Range<Int>]) -> [Float] {
        let d = shape.hiddenSize, heads = shape.heads, headDim = shape.headDimension
        var qkv = affine(input, rows: rows, weight: block.qkv, bias: block.qkvBias)  // per row [q | k | v]
        qkv.withUnsafeMutableBufferPointer { b in
            for r in 0..<rows {
                rotary.apply(b.baseAddress! + r * 3 * d, heads: heads, positions: positions[r])
                rotary.apply(b.baseAddress! + r * 3 * d + d, heads: heads, positions: positions[r])
            }
        }
        var attended = [Float](repeating: 0, count: rows * d)
        let scale = 1 / Float(headDim).squareRoot()
        qkv.withUnsafeBufferPointer { b in
            attended.withUnsafeMutableBufferPointer { o in
                let base = b.baseAddress!, out = o.baseAddress!
                for span in spans {
                    parallelChunks(span.count, minimumChunk: max(1, 4096 / max(1, span.count))) { chunk in
                        let scores = UnsafeMutablePointer<Float>.allocate(capacity: span.count)
                        defer { scores.deallocate() }
                        for i in chunk {
                            let r = span.lowerBound + i
                            attendOneToken(
                                query: base + r * 3 * d, heads: heads, kvHeads: heads, headDimension: headDim,
                                keys: base + span.lowerBound * 3 * d + d, values: base + span.lowerBound * 3 * d + 2 * d,
                                rowStride: 3 * d, length: span.count, scale: scale, scores: scores, into: out + r * d)
                        }
                    }
                }
            }
        }
        return affine(attended, rows: rows, weight: block.projection, bias: block.projectionBias)
    }

    /// `Qwen3VLMoeVisionPatchMerger.forward`; MoonViT's `Kimi_K25MultimodalProjection` is the
    /// same computation (pre_norm per patch, 4 patches concatenated, in_proj, GELU, out_proj).
    private func merge(_ x: [Float], rows: Int, with merger: PatchMerger) -> [Float] {
        let group = shape.spatialMergeSize * shape.spatialMergeSize
        let merged = rows / group
        let epsilon = shape.kind == .moonViT ? shape.projectorNormEpsilon : shape.normEpsilon
        let normed = merger.postShuffleNorm ? layerNormed(x, merger.norm, rows: merged, epsilon: epsilon)
            : layerNormed(x, merger.norm, rows: rows, epsilon: epsilon)
        var hidden = affine(normed, rows: merged, weight: merger.fc1, bias: merger.fc1Bias)
        hidden.withUnsafeMutableBufferPointer { gelu($0.baseAddress!, count: $0.count, tanhApproximation: false) }
        return affine(hidden, rows: merged, weight: merger.fc2, bias: merger.fc2Bias)
    }

    private func affine(_ x: [Float], rows: Int, weight: WeightMatrix, bias: [Float]) -> [Float] {
        var y = [Float](repeating: 0, count: rows * weight.rows)
        x.withUnsafeBufferPointer { xb in
            bias.withUnsafeBufferPointer { bb in
                y.withUnsafeMutableBufferPointer { linear(xb.baseAddress!, tokens: rows, weight: weight, bias: bb.baseAddress!, into: $0.baseAddress!) }
            }
        }
        return y
    }

    private func layerNormed(_ x: [Float], _ norm: LayerNormWeights, rows: Int, epsilon: Float? = nil) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xb in
            norm.weight.withUnsafeBufferPointer { w in
                norm.bias.withUnsafeBufferPointer { b in
                    y.withUnsafeMutableBufferPointer {
                        layerNorm(xb.baseAddress!, rows: rows, width: norm.weight.count, weight: w.baseAddress!, bias: b.baseAddress!,
                                  epsilon: epsilon ?? shape.normEpsilon, into: $0.baseAddress!)
                    }
                }
            }
        }
        return y
    }

    private func add(_ x: [Float], into y: inout [Float]) {
        for i in y.indices { y[i] += x[i] }
    }
}

/// The checkpoint names of a vision tower's tensors (full names), per kind.
struct VisionTensorNames {
    struct Block {
        let norm1: String, norm2: String, qkv: String, projection: String, fc1: String, fc2: String
    }

    struct Merger {
        let norm: String, fc1: String, fc2: String
    }

    let kind: VisionTowerKind
    let patchEmbedding: String
    let positionTable: String
    let finalNorm: String?
    let merger: Merger

    init(_ v: VisionTowerShape) {
        kind = v.kind
        switch v.kind {
        case .qwen3VL:
            let p = VisionTower.prefix
            patchEmbedding = p + "patch_embed.proj"
            positionTable = p + "pos_embed.weight"
            finalNorm = nil
            merger = Merger(norm: p + "merger.norm", fc1: p + "merger.linear_fc1", fc2: p + "merger.linear_fc2")
        case .moonViT:
            patchEmbedding = MoonViT.prefix + "patch_embed.proj"
            positionTable = MoonViT.prefix + "patch_embed.pos_emb.weight"
            finalNorm = MoonViT.prefix + "encoder.final_layernorm"
            merger = Merger(norm: MoonViT.projectorPrefix + "pre_norm", fc1: MoonViT.projectorPrefix + "proj.0",
                            fc2: MoonViT.projectorPrefix + "proj.2")
        }
    }

    func block(_ b: Int) -> Block {
        switch kind {
        case .qwen3VL:
            let q = VisionTower.prefix + "blocks.\(b)."
            return Block(norm1: q + "norm1", norm2: q + "norm2", qkv: q + "attn.qkv", projection: q + "attn.proj",
                         fc1: q + "mlp.linear_fc1", fc2: q + "mlp.linear_fc2")
        case .moonViT:
            let q = MoonViT.prefix + "encoder.blocks.\(b)."
            return Block(norm1: q + "norm0", norm2: q + "norm1", qkv: q + "wqkv", projection: q + "wo",
                         fc1: q + "mlp.fc0", fc2: q + "mlp.fc1")
        }
    }

    func deepstackMerger(_ j: Int) -> Merger {
        let p = VisionTower.prefix + "deepstack_merger_list.\(j)."
        return Merger(norm: p + "norm", fc1: p + "linear_fc1", fc2: p + "linear_fc2")
    }
}
