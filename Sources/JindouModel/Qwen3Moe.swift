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
    var useSlidingWindow: Bool
    var slidingWindow: Int?
    var decoderSparseStep: Int
    var moeIntermediateSize: Int
    var numExpertsPerTok: Int
    var numExperts: Int
    var normTopkProb: Bool
    var mlpOnlyLayers: [Int]
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
        case useSlidingWindow = "use_sliding_window"
        case slidingWindow = "sliding_window"
        case decoderSparseStep = "decoder_sparse_step"
        case moeIntermediateSize = "moe_intermediate_size"
        case numExpertsPerTok = "num_experts_per_tok"
        case numExperts = "num_experts"
        case numLocalExperts = "num_local_experts"
        case normTopkProb = "norm_topk_prob"
        case mlpOnlyLayers = "mlp_only_layers"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case dtype
        case torchDtype = "torch_dtype"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are Qwen3MoeConfig's.
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 151_936
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 2048
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 6144
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 24
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 32
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? 4
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 32768
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        rope = try RopeSettings.decode(
            from: c, parameters: .ropeParameters, theta: .ropeTheta, partialFactor: .partialRotaryFactor,
            scaling: .ropeScaling, defaultTheta: 10_000, defaultPartialFactor: 1)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        useSlidingWindow = try c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) ?? false
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow)
        decoderSparseStep = try c.decodeIfPresent(Int.self, forKey: .decoderSparseStep) ?? 1
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 768
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 8
        numExperts = try c.decodeIfPresent(Int.self, forKey: .numLocalExperts)
            ?? c.decodeIfPresent(Int.self, forKey: .numExperts) ?? 128
        normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .normTopkProb) ?? false
        mlpOnlyLayers = try c.decodeIfPresent([Int].self, forKey: .mlpOnlyLayers) ?? []
        bosTokenID = try c.decodeIfPresent(Int.self, forKey: .bosTokenID)
        eosTokenID = try c.decodeIfPresent(TokenIDList.self, forKey: .eosTokenID)?.values ?? []
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDtype)
    }

    func description() throws -> ModelDescription {
        guard decoderSparseStep >= 1 else {
            throw ConfigurationError(field: "decoder_sparse_step", reason: "must be at least 1")
        }
        let headDimension = headDim ?? hiddenSize / max(1, numAttentionHeads)
        let layers: [FeedForwardKind] = (0..<numHiddenLayers).map { layer in
            // Qwen3MoeDecoderLayer.__init__
            if !mlpOnlyLayers.contains(layer) && numExperts > 0 && (layer + 1) % decoderSparseStep == 0 {
                return .sparse
            }
            return .dense(intermediateSize: intermediateSize)
        }
        return ModelDescription(
            architecture: .qwen3Moe,
            vocabularySize: vocabSize,
            hiddenSize: hiddenSize,
            attention: AttentionShape(
                heads: numAttentionHeads, keyValueHeads: numKeyValueHeads, headDimension: headDimension,
                rotaryDimension: rope.rotaryDimension(headDimension: headDimension), ropeTheta: rope.theta,
                queryKeyNorm: true, queryKeyValueBias: attentionBias, outputBias: attentionBias,
                slidingWindow: useSlidingWindow ? slidingWindow : nil,
                ropeScaling: try rope.scaling(maxPositionEmbeddings: maxPositionEmbeddings)),
            rmsNormEpsilon: Float(rmsNormEps),
            tieWordEmbeddings: tieWordEmbeddings,
            layers: layers,
            router: RouterConfiguration(
                expertCount: numExperts, expertsPerToken: numExpertsPerTok, scoring: .softmax,
                normalizeTopK: normTopkProb),
            hasCorrectionBias: false,
            moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: nil,
            maxPositionEmbeddings: maxPositionEmbeddings,
            eosTokenIDs: eosTokenID,
            bosTokenID: bosTokenID,
            declaredDType: dtype)
    }
}
