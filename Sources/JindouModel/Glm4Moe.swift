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
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int
    var headDim: Int?
    var maxPositionEmbeddings: Int
    var rmsNormEps: Double
    var tieWordEmbeddings: Bool
    var rope: RopeSettings
    var attentionBias: Bool
    var moeIntermediateSize: Int
    var numExpertsPerTok: Int
    var nSharedExperts: Int
    var nRoutedExperts: Int
    var routedScalingFactor: Double
    var nGroup: Int
    var topkGroup: Int
    var firstKDenseReplace: Int
    var normTopkProb: Bool
    var useQkNorm: Bool
    var bosTokenID: Int?
    var eosTokenID: [Int]
    var dtype: String?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case tieWordEmbeddings = "tie_word_embeddings"
        case ropeParameters = "rope_parameters"
        case ropeTheta = "rope_theta"
        case partialRotaryFactor = "partial_rotary_factor"
        case ropeScaling = "rope_scaling"
        case attentionBias = "attention_bias"
        case moeIntermediateSize = "moe_intermediate_size"
        case numExpertsPerTok = "num_experts_per_tok"
        case nSharedExperts = "n_shared_experts"
        case nRoutedExperts = "n_routed_experts"
        case numLocalExperts = "num_local_experts"
        case routedScalingFactor = "routed_scaling_factor"
        case nGroup = "n_group"
        case topkGroup = "topk_group"
        case firstKDenseReplace = "first_k_dense_replace"
        case normTopkProb = "norm_topk_prob"
        case useQkNorm = "use_qk_norm"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case dtype
        case torchDtype = "torch_dtype"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are Glm4MoeConfig's.
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 151_552
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 4096
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 10944
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 46
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 96
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? 8
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 131_072
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-5
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        rope = try RopeSettings.decode(
            from: c, parameters: .ropeParameters, theta: .ropeTheta, partialFactor: .partialRotaryFactor,
            scaling: .ropeScaling, defaultTheta: 10_000, defaultPartialFactor: 0.5)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 1408
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 8
        nSharedExperts = try c.decodeIfPresent(Int.self, forKey: .nSharedExperts) ?? 1
        nRoutedExperts = try c.decodeIfPresent(Int.self, forKey: .nRoutedExperts)
            ?? c.decodeIfPresent(Int.self, forKey: .numLocalExperts) ?? 128
        routedScalingFactor = try c.decodeIfPresent(Double.self, forKey: .routedScalingFactor) ?? 1
        nGroup = try c.decodeIfPresent(Int.self, forKey: .nGroup) ?? 1
        topkGroup = try c.decodeIfPresent(Int.self, forKey: .topkGroup) ?? 1
        firstKDenseReplace = try c.decodeIfPresent(Int.self, forKey: .firstKDenseReplace) ?? 1
        normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .normTopkProb) ?? true
        useQkNorm = try c.decodeIfPresent(Bool.self, forKey: .useQkNorm) ?? false
        bosTokenID = try c.decodeIfPresent(Int.self, forKey: .bosTokenID)
        eosTokenID = try c.decodeIfPresent(TokenIDList.self, forKey: .eosTokenID)?.values ?? []
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDtype)
    }

    func description() throws -> ModelDescription {
        let headDimension = headDim ?? hiddenSize / max(1, numAttentionHeads)
        let layers: [FeedForwardKind] = (0..<numHiddenLayers).map { layer in
            // Glm4MoeDecoderLayer.__init__
            layer >= firstKDenseReplace ? .sparse : .dense(intermediateSize: intermediateSize)
        }
        return ModelDescription(
            architecture: .glm4Moe,
            vocabularySize: vocabSize,
            hiddenSize: hiddenSize,
            attention: AttentionShape(
                heads: numAttentionHeads, keyValueHeads: numKeyValueHeads, headDimension: headDimension,
                rotaryDimension: rope.rotaryDimension(headDimension: headDimension), ropeTheta: rope.theta,
                queryKeyNorm: useQkNorm, queryKeyValueBias: attentionBias, outputBias: false,
                slidingWindow: nil,
                ropeScaling: try rope.scaling(maxPositionEmbeddings: maxPositionEmbeddings)),
            rmsNormEpsilon: Float(rmsNormEps),
            tieWordEmbeddings: tieWordEmbeddings,
            layers: layers,
            router: RouterConfiguration(
                expertCount: nRoutedExperts, expertsPerToken: numExpertsPerTok, scoring: .sigmoid,
                normalizeTopK: normTopkProb, routedScalingFactor: Float(routedScalingFactor),
                groupCount: nGroup, groupsPerToken: topkGroup, normalizationEpsilon: 1e-20),
            hasCorrectionBias: true,
            moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: nSharedExperts > 0 ? moeIntermediateSize * nSharedExperts : nil,
            maxPositionEmbeddings: maxPositionEmbeddings,
            eosTokenIDs: eosTokenID,
            bosTokenID: bosTokenID,
            declaredDType: dtype)
    }
}
