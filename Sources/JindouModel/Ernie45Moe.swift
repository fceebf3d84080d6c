// ERNIE-4.5-MoE (21B-A3B, 300B-A47B), mirroring transformers' `models/ernie4_5_moe/
// modular_ernie4_5_moe.py`:
// - `Ernie4_5_MoeAttention(LlamaAttention)`: GQA without q/k norm; `use_bias` would put
//   biases on q/k/v/o and on every MLP (refused: no released checkpoint sets it).
// - `Ernie4_5_MoeRotaryEmbedding` + `apply_rotary_pos_emb`: full-width rotary on adjacent
//   pairs (cos/sin of the first half repeated per pair, the interleaved `rotate_half`) —
//   Jindou's interleaved rotary (its output layout differs, q and k alike, so q·k does not).
// - `Ernie4_5_MoeDecoderLayer(Qwen3MoeDecoderLayer)`: a layer is sparse when
//   `(layer + 1) % moe_layer_interval == 0` and `moe_layer_start_index ≤ layer ≤
//   moe_layer_end_index` (−1: the last layer), else a dense MLP of `intermediate_size`.
// - `Ernie4_5_MoeSparseMoeBlock`: routed experts plus, with `moe_num_shared_experts`, one
//   shared MLP of `moe_intermediate_size × moe_num_shared_experts`, added ungated.
// - `Ernie4_5_MoeTopKRouter`: softmax in fp32, the choice on softmax + `moe_statics.
//   e_score_correction_bias` (stored [1, experts]), weights the chosen softmax values over
//   `clamp(sum, min=moe_norm_min)`; with a softmax the sum of the top-k is ≥ k/experts, far
//   above the 1e-12 floor, so that is Router's plain renormalisation (a floor that could
//   bind is refused).

import Foundation
import JindouRouting

enum Ernie45MoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.ernie45Moe
    static let modelTypes = ["ernie4_5_moe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(Ernie45MoeConfiguration.self, configJSON) }
}

/// `Ernie4_5_MoeConfig`, read from either config style (see `RopeSettings`).
struct Ernie45MoeConfiguration: DescribedConfiguration {
    var core: DecoderCore
    var useBias: Bool
    var moeIntermediateSize: Int
    var moeK: Int
    var moeNumExperts: Int
    var moeNumSharedExperts: Int
    var moeLayerStartIndex: Int
    var moeLayerEndIndex: Int
    var moeLayerInterval: Int
    var moeNormMin: Double

    /// Ernie4_5_MoeConfig's defaults.
    static let defaults = DecoderCore.Defaults(
        vocabSize: 103_424, hiddenSize: 2560, intermediateSize: 12288, numHiddenLayers: 28, numAttentionHeads: 20,
        numKeyValueHeads: 4, maxPositionEmbeddings: 131_072, rmsNormEps: 1e-5, tieWordEmbeddings: true, ropeTheta: 500_000,
        bosTokenID: 1, eosTokenID: [2])

    /// ERNIE's own MoE names (`moe_k`, `moe_num_experts`), and the common ones as fallbacks.
    enum CodingKeys: String, CodingKey {
        case useBias = "use_bias"
        case moeIntermediateSize = "moe_intermediate_size"
        case moeK = "moe_k"
        case numExpertsPerTok = "num_experts_per_tok"
        case moeNumExperts = "moe_num_experts"
        case numExperts = "num_experts"
        case moeNumSharedExperts = "moe_num_shared_experts"
        case moeLayerStartIndex = "moe_layer_start_index"
        case moeLayerEndIndex = "moe_layer_end_index"
        case moeLayerInterval = "moe_layer_interval"
        case moeNormMin = "moe_norm_min"
    }

    init(from decoder: Decoder) throws {
        core = try DecoderCore(from: decoder, defaults: Self.defaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are Ernie4_5_MoeConfig's.
        useBias = try c.decodeIfPresent(Bool.self, forKey: .useBias) ?? false
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 1536
        moeK = try c.decodeIfPresent(Int.self, forKey: .moeK) ?? c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 6
        moeNumExperts = try c.decodeIfPresent(Int.self, forKey: .moeNumExperts) ?? c.decodeIfPresent(Int.self, forKey: .numExperts) ?? 64
        moeNumSharedExperts = try c.decodeIfPresent(Int.self, forKey: .moeNumSharedExperts) ?? 2
        moeLayerStartIndex = try c.decodeIfPresent(Int.self, forKey: .moeLayerStartIndex) ?? 1
        moeLayerEndIndex = try c.decodeIfPresent(Int.self, forKey: .moeLayerEndIndex) ?? -1
        moeLayerInterval = try c.decodeIfPresent(Int.self, forKey: .moeLayerInterval) ?? 1
        moeNormMin = try c.decodeIfPresent(Double.self, forKey: .moeNormMin) ?? 1e-12
    }

    func description() throws -> ModelDescription {
        let numHiddenLayers = core.numHiddenLayers
        guard core.hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(core.hiddenAct)' is not supported (silu only)") }
        guard !useBias else { throw ConfigurationError(field: "use_bias", reason: "MLP biases are not supported yet (no released ERNIE-4.5 checkpoint sets use_bias)") }
        guard moeLayerInterval >= 1 else { throw ConfigurationError(field: "moe_layer_interval", reason: "must be at least 1") }
        guard moeNumExperts >= 1 else { throw ConfigurationError(field: "moe_num_experts", reason: "must be at least 1") }
        // The smallest top-k sum a softmax can give; a floor above it would change weights.
        guard moeNormMin < Double(max(1, moeK)) / Double(moeNumExperts) / 2 else {
            throw ConfigurationError(field: "moe_norm_min", reason: "a floor that can bind (\(moeNormMin)) is not supported")
        }
        let end = moeLayerEndIndex == -1 ? numHiddenLayers - 1 : moeLayerEndIndex
        var description = core.description(
            architecture: .ernie45Moe,
            attention: try core.groupedAttention(queryKeyNorm: false, queryKeyValueBias: false, outputBias: false, interleavedRotary: true),
            // Ernie4_5_MoeDecoderLayer.__init__
            layers: (0..<numHiddenLayers).map { layer in
                (layer + 1) % moeLayerInterval == 0 && layer >= moeLayerStartIndex && layer <= end
                    ? .sparse : .dense(intermediateSize: core.intermediateSize)
            },
            router: RouterConfiguration(expertCount: moeNumExperts, expertsPerToken: moeK, scoring: .softmax, normalizeTopK: true),
            hasCorrectionBias: true, moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: moeNumSharedExperts > 0 ? moeIntermediateSize * moeNumSharedExperts : nil)
        description.moeNames.correctionBias = "moe_statics.e_score_correction_bias"
        description.moeNames.correctionBiasIsRow = true
        return description
    }
}
