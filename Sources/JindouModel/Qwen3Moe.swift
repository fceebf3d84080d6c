// Qwen3-MoE, mirroring transformers' `models/qwen3_moe/configuration_qwen3_moe.py` and
// `modeling_qwen3_moe.py`:
// - `Qwen3MoeAttention`: GQA, per-head RMSNorm on q and k (`q_norm`, `k_norm`) before
//   rotary, optional `attention_bias` on q/k/v/o, optional sliding window.
// - `Qwen3MoeDecoderLayer`: a layer is sparse when it is not in `mlp_only_layers` and
//   `(layer + 1) % decoder_sparse_step == 0`; otherwise a dense `Qwen3MoeMLP`.
// - `Qwen3MoeTopKRouter`: softmax over experts, top-k, optional `norm_topk_prob`.
// The block computations themselves live in `DecoderModel.swift` (shared with GLM4-MoE,
// whose blocks are the same up to the noted differences).

import JindouRouting

/// `Qwen3MoeConfig`, read from either config style (see `RopeSettings`).
struct Qwen3MoeConfiguration: Decodable {
    var core: DecoderCore
    var useSlidingWindow: Bool
    var slidingWindow: Int?
    var decoderSparseStep: Int
    var moeIntermediateSize: Int
    var numExpertsPerTok: Int
    var numExperts: Int
    var normTopkProb: Bool
    var mlpOnlyLayers: [Int]

    /// Qwen3MoeConfig's defaults.
    static let defaults = DecoderCore.Defaults(
        vocabSize: 151_936, hiddenSize: 2048, intermediateSize: 6144, numHiddenLayers: 24, numAttentionHeads: 32,
        numKeyValueHeads: 4, maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, ropeTheta: 10_000)

    enum CodingKeys: String, CodingKey {
        case useSlidingWindow = "use_sliding_window"
        case slidingWindow = "sliding_window"
        case decoderSparseStep = "decoder_sparse_step"
        case moeIntermediateSize = "moe_intermediate_size"
        case numExpertsPerTok = "num_experts_per_tok"
        case numExperts = "num_experts"
        case numLocalExperts = "num_local_experts"
        case normTopkProb = "norm_topk_prob"
        case mlpOnlyLayers = "mlp_only_layers"
    }

    init(from decoder: Decoder) throws { try self.init(from: decoder, defaults: Self.defaults) }

    /// `defaults`: another class's values for the shared keys (Qwen3NextConfig's).
    init(from decoder: Decoder, defaults: DecoderCore.Defaults) throws {
        core = try DecoderCore(from: decoder, defaults: defaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are Qwen3MoeConfig's.
        useSlidingWindow = try c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) ?? false
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow)
        decoderSparseStep = try c.decodeIfPresent(Int.self, forKey: .decoderSparseStep) ?? 1
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 768
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 8
        numExperts = try c.decodeIfPresent(Int.self, forKey: .numLocalExperts)
            ?? c.decodeIfPresent(Int.self, forKey: .numExperts) ?? 128
        normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .normTopkProb) ?? false
        mlpOnlyLayers = try c.decodeIfPresent([Int].self, forKey: .mlpOnlyLayers) ?? []
    }

    func description() throws -> ModelDescription {
        guard decoderSparseStep >= 1 else {
            throw ConfigurationError(field: "decoder_sparse_step", reason: "must be at least 1")
        }
        let layers: [FeedForwardKind] = (0..<core.numHiddenLayers).map { layer in
            // Qwen3MoeDecoderLayer.__init__
            if !mlpOnlyLayers.contains(layer) && numExperts > 0 && (layer + 1) % decoderSparseStep == 0 {
                return .sparse
            }
            return .dense(intermediateSize: core.intermediateSize)
        }
        return core.description(
            architecture: .qwen3Moe,
            attention: try core.groupedAttention(
                queryKeyNorm: true, queryKeyValueBias: core.attentionBias, outputBias: core.attentionBias,
                slidingWindow: useSlidingWindow ? slidingWindow : nil),
            layers: layers,
            router: RouterConfiguration(
                expertCount: numExperts, expertsPerToken: numExpertsPerTok, scoring: .softmax,
                normalizeTopK: normTopkProb),
            hasCorrectionBias: false, moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: nil)
    }
}
