// DeepSeek-V3 / V3.1 and Kimi-K2, mirroring transformers'
// `models/deepseek_v3/configuration_deepseek_v3.py` and `modeling_deepseek_v3.py`:
// - `DeepseekV3Attention`: Multi-head Latent Attention. q = q_b_proj(q_a_layernorm(q_a_proj(x)))
//   (or q_proj(x) when `q_lora_rank` is null), split per head into [nope | rope];
//   kv_a_proj_with_mqa(x) = [latent (kv_lora_rank) | k_rot (qk_rope_head_dim)], latent →
//   kv_a_layernorm; rotary on q_rot and the single shared k_rot (interleaved pairs with
//   `rope_interleave`); kv_b_proj(latent) = per head [k_nope | v]; eager attention with
//   scale qk_head_dim^-0.5 × yarn mscale²; o_proj. Jindou caches only [latent | k_rot]
//   (see LatentAttention.swift for the absorbed decode form).
// - `DeepseekV3RotaryEmbedding`: default or YaRN frequencies over qk_rope_head_dim
//   (transformers sets head_dim = qk_rope_head_dim), cos/sin × attention factor.
// - `DeepseekV3DecoderLayer`: dense `DeepseekV3MLP` below `first_k_dense_replace`, else
//   `DeepseekV3MoE` (routed experts + shared experts of moe_intermediate_size ×
//   n_shared_experts). DeepSeek's own modeling code also requires layer % moe_layer_freq
//   == 0; every released checkpoint has moe_layer_freq 1, where both rules agree.
// - `DeepseekV3TopkRouter`: sigmoid, e_score_correction_bias for selection, groups scored by
//   the sum of their top-2, top `topk_group` groups, top-k, norm_topk_prob (1e-20),
//   routed_scaling_factor. Implemented by `Router` (the same rule as GLM4-MoE).
// - Multi-token-prediction layers (`num_nextn_predict_layers`, stored at layer index
//   num_hidden_layers) are not part of plain decoding: never requested, never mapped.

import JindouRouting

/// `DeepseekV3Config`, read from either config style (transformers 5 `rope_parameters`, or
/// the Hub's 4.x `rope_theta` + `rope_scaling`). Kimi-K2's config (`model_type: kimi_k2`)
/// uses the same keys.
struct DeepseekV3Configuration: Decodable {
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var moeIntermediateSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var nSharedExperts: Int
    var nRoutedExperts: Int
    var routedScalingFactor: Double
    var kvLoraRank: Int
    var qLoraRank: Int?
    var qkRopeHeadDim: Int
    var vHeadDim: Int
    var qkNopeHeadDim: Int
    var nGroup: Int
    var topkGroup: Int
    var numExpertsPerTok: Int
    var firstKDenseReplace: Int
    var moeLayerFreq: Int
    var normTopkProb: Bool
    var maxPositionEmbeddings: Int
    var rmsNormEps: Double
    var tieWordEmbeddings: Bool
    var rope: RopeSettings
    var ropeInterleave: Bool
    var attentionBias: Bool
    var numNextnPredictLayers: Int
    var scoringFunc: String
    var topkMethod: String
    var bosTokenID: Int?
    var eosTokenID: [Int]
    var dtype: String?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case moeIntermediateSize = "moe_intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case nSharedExperts = "n_shared_experts"
        case nRoutedExperts = "n_routed_experts"
        case routedScalingFactor = "routed_scaling_factor"
        case kvLoraRank = "kv_lora_rank"
        case qLoraRank = "q_lora_rank"
        case qkRopeHeadDim = "qk_rope_head_dim"
        case vHeadDim = "v_head_dim"
        case qkNopeHeadDim = "qk_nope_head_dim"
        case nGroup = "n_group"
        case topkGroup = "topk_group"
        case numExpertsPerTok = "num_experts_per_tok"
        case firstKDenseReplace = "first_k_dense_replace"
        case moeLayerFreq = "moe_layer_freq"
        case normTopkProb = "norm_topk_prob"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case tieWordEmbeddings = "tie_word_embeddings"
        case ropeParameters = "rope_parameters"
        case ropeTheta = "rope_theta"
        case partialRotaryFactor = "partial_rotary_factor"
        case ropeScaling = "rope_scaling"
        case ropeInterleave = "rope_interleave"
        case attentionBias = "attention_bias"
        case numNextnPredictLayers = "num_nextn_predict_layers"
        case scoringFunc = "scoring_func"
        case topkMethod = "topk_method"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case dtype
        case torchDtype = "torch_dtype"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are DeepseekV3Config's.
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 129_280
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 7168
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 18_432
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 2048
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 61
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 128
        nSharedExperts = try c.decodeIfPresent(Int.self, forKey: .nSharedExperts) ?? 1
        nRoutedExperts = try c.decodeIfPresent(Int.self, forKey: .nRoutedExperts) ?? 256
        routedScalingFactor = try c.decodeIfPresent(Double.self, forKey: .routedScalingFactor) ?? 2.5
        kvLoraRank = try c.decodeIfPresent(Int.self, forKey: .kvLoraRank) ?? 512
        // null means "no q-LoRA", so a present null must not fall back to the default.
        qLoraRank = c.contains(.qLoraRank) ? try c.decodeIfPresent(Int.self, forKey: .qLoraRank) : 1536
        qkRopeHeadDim = try c.decodeIfPresent(Int.self, forKey: .qkRopeHeadDim) ?? 64
        vHeadDim = try c.decodeIfPresent(Int.self, forKey: .vHeadDim) ?? 128
        qkNopeHeadDim = try c.decodeIfPresent(Int.self, forKey: .qkNopeHeadDim) ?? 128
        nGroup = try c.decodeIfPresent(Int.self, forKey: .nGroup) ?? 8
        topkGroup = try c.decodeIfPresent(Int.self, forKey: .topkGroup) ?? 4
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 8
        firstKDenseReplace = try c.decodeIfPresent(Int.self, forKey: .firstKDenseReplace) ?? 3
        moeLayerFreq = try c.decodeIfPresent(Int.self, forKey: .moeLayerFreq) ?? 1
        normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .normTopkProb) ?? true
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 4096
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        rope = try RopeSettings.decode(
            from: c, parameters: .ropeParameters, theta: .ropeTheta, partialFactor: .partialRotaryFactor,
            scaling: .ropeScaling, defaultTheta: 10_000, defaultPartialFactor: 1)
        ropeInterleave = try c.decodeIfPresent(Bool.self, forKey: .ropeInterleave) ?? true
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        numNextnPredictLayers = try c.decodeIfPresent(Int.self, forKey: .numNextnPredictLayers) ?? 1
        scoringFunc = try c.decodeIfPresent(String.self, forKey: .scoringFunc) ?? "sigmoid"
        topkMethod = try c.decodeIfPresent(String.self, forKey: .topkMethod) ?? "noaux_tc"
        bosTokenID = try c.specialToken(.bosTokenID, default: 0)
        eosTokenID = try c.specialTokens(.eosTokenID, default: [1])
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDtype)
    }

    func description() throws -> ModelDescription {
        // transformers' DeepseekV3TopkRouter always scores with sigmoid and the noaux_tc
        // rule; a checkpoint that asks for anything else (DeepSeek-V2's softmax/greedy) is
        // a different model.
        guard scoringFunc == "sigmoid" else {
            throw ConfigurationError(field: "scoring_func", reason: "'\(scoringFunc)' is not supported (DeepSeek-V3 uses sigmoid)")
        }
        guard topkMethod == "noaux_tc" else {
            throw ConfigurationError(field: "topk_method", reason: "'\(topkMethod)' is not supported (DeepSeek-V3 uses noaux_tc)")
        }
        guard moeLayerFreq >= 1 else {
            throw ConfigurationError(field: "moe_layer_freq", reason: "must be at least 1")
        }
        guard rope.partialRotaryFactor == 1 else {
            throw ConfigurationError(field: "partial_rotary_factor", reason: "DeepSeek-V3 rotates all qk_rope_head_dim features")
        }
        let layers: [FeedForwardKind] = (0..<numHiddenLayers).map { layer in
            layer >= firstKDenseReplace && layer % moeLayerFreq == 0 ? .sparse : .dense(intermediateSize: intermediateSize)
        }
        let ropeScaling = try rope.scaling(maxPositionEmbeddings: maxPositionEmbeddings)
        let queryKeyDimension = qkNopeHeadDim + qkRopeHeadDim
        // DeepseekV3Attention.scaling = yarn_apply_mscale(rope_parameters, qk_head_dim ** -0.5)
        var softmaxScale = 1 / Double(queryKeyDimension).squareRoot()
        if case .yarn(let yarn) = ropeScaling, let all = yarn.mscaleAllDim, all != 0 {
            let m = YarnScaling.mscale(yarn.factor, all)
            softmaxScale *= m * m
        }
        var description = ModelDescription(
            architecture: .deepseekV3,
            vocabularySize: vocabSize,
            hiddenSize: hiddenSize,
            // The grouped-attention view of MLA's expanded form (informational; the
            // latent shape below is what the engine runs).
            attention: AttentionShape(
                heads: numAttentionHeads, keyValueHeads: numAttentionHeads, headDimension: queryKeyDimension,
                rotaryDimension: qkRopeHeadDim, ropeTheta: rope.theta, queryKeyNorm: false,
                queryKeyValueBias: attentionBias, outputBias: attentionBias, slidingWindow: nil,
                ropeScaling: ropeScaling, interleavedRotary: ropeInterleave),
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
        description.latentAttention = LatentAttentionShape(
            heads: numAttentionHeads, queryLoraRank: qLoraRank, keyValueLoraRank: kvLoraRank,
            nopeDimension: qkNopeHeadDim, ropeDimension: qkRopeHeadDim, valueDimension: vHeadDim,
            bias: attentionBias, softmaxScale: Float(softmaxScale))
        description.ignoredPredictionLayers = numNextnPredictLayers
        return description
    }
}
