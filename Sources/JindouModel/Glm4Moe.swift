// GLM4-MoE (GLM-4.5 / 4.6 / 4.5-Air), mirroring transformers'
// `models/glm4_moe/configuration_glm4_moe.py` and `modeling_glm4_moe.py`:
// - `Glm4MoeAttention`: GQA, q/k/v biases with `attention_bias` (o_proj never has one),
//   optional per-head q/k RMSNorm (`use_qk_norm`), partial rotary
//   (`partial_rotary_factor`, default 0.5) on the first rotary features of each head.
// - `Glm4MoeDecoderLayer`: layers below `first_k_dense_replace` are dense `Glm4MoeMLP`,
//   the rest `Glm4MoeMoE` = routed experts + shared experts
//   (`moe_intermediate_size × n_shared_experts`).
// - `Glm4MoeTopkRouter`: sigmoid scores, `e_score_correction_bias` for selection only,
//   group-limited top-k (`n_group`, `topk_group`), `norm_topk_prob` with 1e-20,
//   `routed_scaling_factor`. Implemented by `Router`.
// - Checkpoints may carry MTP layers (`num_nextn_predict_layers`) at index
//   `num_hidden_layers`; they are never requested, so never loaded.

import JindouRouting

/// `Glm4MoeConfig`, read from either config style (see `RopeSettings`).
struct Glm4MoeConfiguration: Decodable {
    var core: DecoderCore
    var experts: RoutedExperts
    var useQkNorm: Bool

    /// Glm4MoeConfig's defaults.
    static let defaults = DecoderCore.Defaults(
        vocabSize: 151_552, hiddenSize: 4096, intermediateSize: 10944, numHiddenLayers: 46, numAttentionHeads: 96,
        numKeyValueHeads: 8, maxPositionEmbeddings: 131_072, rmsNormEps: 1e-5, ropeTheta: 10_000, partialRotaryFactor: 0.5)
    static let expertDefaults = RoutedExperts.Defaults(
        intermediateSize: 1408, count: 128, perToken: 8, sharedExperts: 1, normalizeTopK: true, firstDenseLayers: 1,
        countKeys: ["n_routed_experts", "num_local_experts"])

    enum CodingKeys: String, CodingKey {
        case useQkNorm = "use_qk_norm"
    }

    init(from decoder: Decoder) throws {
        core = try DecoderCore(from: decoder, defaults: Self.defaults)
        experts = try RoutedExperts(from: decoder, defaults: Self.expertDefaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        useQkNorm = try c.decodeIfPresent(Bool.self, forKey: .useQkNorm) ?? false
    }

    func description() throws -> ModelDescription {
        let layers: [FeedForwardKind] = (0..<core.numHiddenLayers).map { layer in
            // Glm4MoeDecoderLayer.__init__
            layer >= experts.firstDenseLayers ? .sparse : .dense(intermediateSize: core.intermediateSize)
        }
        return core.description(
            architecture: .glm4Moe,
            attention: try core.groupedAttention(queryKeyNorm: useQkNorm, queryKeyValueBias: core.attentionBias, outputBias: false),
            layers: layers,
            router: experts.router,
            hasCorrectionBias: true, moeIntermediateSize: experts.intermediateSize,
            sharedExpertIntermediateSize: experts.sharedExpertIntermediateSize)
    }
}
