// A prompt with images, ready for the text model: which prompt positions are image tokens
// (and which vision-feature row each takes), the DeepStack features, and the 3-D M-RoPE
// positions of every prompt token, computed as `Qwen3VLMoeModel.get_rope_index` does:
//   - consecutive text tokens count up on all three axes together;
//   - a run of image tokens (one image: t × h/m × w/m tokens) gets temporal, height and width
//     positions start + (t_i, h_i, w_i), start being the position after the preceding text;
//     the next text starts at start + max(h, w)/m;
//   - tokens after the prompt (generation) use position p + delta on all axes, with
//     delta = (largest prompt position + 1) − prompt length (`rope_deltas`).

import Foundation

public struct MultimodalPrompt: Sendable {
    /// (t, h, w) rotary positions of the prompt's tokens.
    public let positions: [SIMD3<Int>]
    public let ropeDelta: Int
    /// Per prompt position, the row of `embeddings` it takes, or −1 for text.
    public let rows: [Int]
    /// Merged vision features, one row of `hidden` floats per image token.
    public let embeddings: [Float]
    /// DeepStack features per text layer (same rows).
    public let deepstack: [[Float]]

    public func ropePosition(at position: Int) -> SIMD3<Int> {
        position < positions.count ? positions[position] : SIMD3(repeating: position + ropeDelta)
    }

    public func visualRow(at position: Int) -> Int { position < rows.count ? rows[position] : -1 }

    /// Lays `features` (from `VisionTower.encode` of `grids`, in order) over the image
    /// tokens of `tokens`. Each image must be one run of exactly its token count.
    /// Without `mrope` (Kimi-K2.5) every token, image or text, keeps its own position.
    public init(tokens: [Int], imageTokenID: Int, grids: [ImageGrid], mergeSize: Int, features: VisionFeatures,
                mrope: Bool = true) throws {
        var positions: [SIMD3<Int>] = []
        positions.reserveCapacity(tokens.count)
        var rows = [Int](repeating: -1, count: tokens.count)
        var current = 0, image = 0, row = 0, i = 0
        while i < tokens.count {
            if tokens[i] != imageTokenID {
                positions.append(SIMD3(repeating: current))
                current += 1
                i += 1
                continue
            }
            var end = i
            while end < tokens.count && tokens[end] == imageTokenID { end += 1 }
            guard image < grids.count else {
                throw VisionError.tokenMismatch(reason: "the prompt has more runs of image tokens than the \(grids.count) images given")
            }
            let g = grids[image]
            let (t, h, w) = (g.t, g.h / mergeSize, g.w / mergeSize)
            guard end - i == t * h * w else {
                throw VisionError.tokenMismatch(reason: "image \(image) needs \(t * h * w) image tokens in the prompt, found a run of \(end - i)")
            }
            if mrope {
                for ti in 0..<t {
                    for hi in 0..<h {
                        for wi in 0..<w { positions.append(SIMD3(current + ti, current + hi, current + wi)) }
                    }
                }
            } else {
                for p in i..<end { positions.append(SIMD3(repeating: p)) }
            }
            for p in i..<end {
                rows[p] = row
                row += 1
            }
            current = mrope ? current + max(g.h, g.w) / mergeSize : end
            image += 1
            i = end
        }
        guard image == grids.count else {
            throw VisionError.tokenMismatch(reason: "\(grids.count) images given but the prompt has image tokens for \(image)")
        }
        guard row == features.tokens else {
            throw VisionError.tokenMismatch(reason: "\(row) image tokens but the vision tower produced \(features.tokens) features")
        }
        self.positions = positions
        let largest = positions.map { max($0[0], $0[1], $0[2]) }.max() ?? -1
        ropeDelta = largest + 1 - tokens.count
        self.rows = rows
        embeddings = features.embeddings
        deepstack = features.deepstack
    }
}
