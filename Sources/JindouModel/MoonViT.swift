// Kimi-K2.5's vision tower, MoonViT-3D, mirroring transformers'
// `models/kimi_k25/modeling_kimi_k25.py` (`Kimi_K25VisionModel`, `Kimi_K25MultimodalProjection`),
// read from the Hub layout of moonshotai/Kimi-K2.5 (transformers' conversion_mapping "kimi_k25"):
//   patch_embed:   Conv2d with kernel = stride = patch over each 3·14·14 patch = a linear map
//                  (`vision_tower.patch_embed.proj`), patches in raster order
//   pos_emb:       the learned H×W table (`vision_tower.patch_embed.pos_emb.weight`) resampled
//                  bicubically (Keys a = −0.75, half-pixel centres, border taps) to the image's
//                  grid; a clip of t > 1 frames would add a temporal sinusoid (images: none)
//   rotary:        2-D axial rope over the whole head: frequency pair j (of head_dim/2) turns
//                  with the patch column when j is even and its row when odd, at inv_freq[j/2]
//                  of head_dim/4 frequencies (`Kimi_K25VisionRotaryEmbedding`); the Hub's
//                  fused `wqkv` keeps q and k in complex-pair order, reordered to rotate-half
//                  order at load time as transformers' PermuteForRope does
//   blocks:        x += wo(attn(rope(wqkv(norm0(x))))) within each image; x += fc1(gelu_tanh(fc0(norm1(x))))
//                  (Qwen2-VL's block; LayerNorm eps 1e-5)
//   final norm:    `vision_tower.encoder.final_layernorm`
//   merge:         `temporal_merge`: each 2×2 block of patches becomes one token's 4 rows
//   projector:     `mm_projector`: pre_norm per patch, the 4 concatenated, proj.0 → GELU → proj.2
// It runs on the coordinator as Qwen3-VL's tower does (VisionTower.swift holds both).

import Foundation
import JindouNumerics

enum MoonViT {
    static let prefix = "vision_tower."
    static let projectorPrefix = "mm_projector."

    static func tensorRequests(_ v: VisionTowerShape) -> [TensorRequest] {
        let d = v.hiddenSize, merged = d * v.spatialMergeSize * v.spatialMergeSize
        let names = VisionTensorNames(v)
        func linear(_ name: String, _ rows: Int, _ columns: Int) -> [TensorRequest] {
            [TensorRequest(name + ".weight", shape: [rows, columns]), TensorRequest(name + ".bias", shape: [rows])]
        }
        func norm(_ name: String, _ width: Int) -> [TensorRequest] {
            [TensorRequest(name + ".weight", shape: [width]), TensorRequest(name + ".bias", shape: [width])]
        }
        let side = v.positionGridSide
        var requests = [
            TensorRequest(names.patchEmbedding + ".weight", shape: [d, v.inChannels, v.patchSize, v.patchSize]),
            TensorRequest(names.patchEmbedding + ".bias", shape: [d]),
            TensorRequest(names.positionTable, shape: [side, side, d]),
        ]
        for b in 0..<v.depth {
            let q = names.block(b)
            requests += norm(q.norm1, d) + norm(q.norm2, d) + linear(q.qkv, 3 * d, d) + linear(q.projection, d, d)
                + linear(q.fc1, v.intermediateSize, d) + linear(q.fc2, d, v.intermediateSize)
        }
        requests += norm(names.finalNorm!, d)
        requests += norm(names.merger.norm, d) + linear(names.merger.fc1, merged, merged)
            + linear(names.merger.fc2, v.outHiddenSize, merged)
        return requests
    }

    /// `wqkv` ([q | k | v] rows) with the q and k rows of every head moved from complex-pair
    /// order (2i, 2i+1) to rotate-half order (i, i + head_dim/2): PermuteForRope.
    static func rotateHalfOrder(qkv: [Float], bias: [Float], shape v: VisionTowerShape) throws -> (WeightMatrix, [Float]) {
        let d = v.hiddenSize, headDim = v.headDimension, half = headDim / 2
        var rows = Array(0..<(3 * d))
        for block in 0..<2 {
            for head in 0..<v.heads {
                let base = block * d + head * headDim
                for i in 0..<half {
                    rows[base + i] = base + 2 * i
                    rows[base + half + i] = base + 2 * i + 1
                }
            }
        }
        var weight = [Float](repeating: 0, count: qkv.count)
        for (target, source) in rows.enumerated() {
            weight.replaceSubrange((target * d)..<((target + 1) * d), with: qkv[(source * d)..<((source + 1) * d)])
        }
        return (WeightMatrix(rows: 3 * d, columns: d, float32: weight), rows.map { bias[$0] })
    }

    /// `Kimi_K25VisionRotaryEmbedding`: head_dim/4 axial frequencies, each used for the
    /// column (even pair) then the row (odd pair), the whole head rotated.
    static func rotary(_ v: VisionTowerShape) -> RotaryEmbedding {
        let d = v.headDimension
        let axial = RotaryEmbedding(headDimension: d / 2, rotaryDimension: d / 2, base: v.ropeTheta).inverseFrequencies
        return RotaryEmbedding(headDimension: d, rotaryDimension: d, base: v.ropeTheta,
                               inverseFrequencies: (0..<(d / 2)).map { axial[$0 / 2] },
                               frequencyAxes: (0..<(d / 2)).map { $0 % 2 == 0 ? 2 : 1 })
    }
}
