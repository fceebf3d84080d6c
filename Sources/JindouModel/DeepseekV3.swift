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
    var core: DecoderCore
    var experts: RoutedExperts
    var kvLoraRank: Int
    var qLoraRank: Int?
    var qkRopeHeadDim: Int
    var vHeadDim: Int
    var qkNopeHeadDim: Int
    var moeLayerFreq: Int
    var ropeInterleave: Bool
    var numNextnPredictLayers: Int
    var scoringFunc: String
    var topkMethod: String

    /// DeepseekV3Config's defaults.
    static let defaults = DecoderCore.Defaults(
        vocabSize: 129_280, hiddenSize: 7168, intermediateSize: 18_432, numHiddenLayers: 61, numAttentionHeads: 128,
        maxPositionEmbeddings: 4096, rmsNormEps: 1e-6, ropeTheta: 10_000, bosTokenID: 0, eosTokenID: [1])
    static let expertDefaults = RoutedExperts.Defaults(
        intermediateSize: 2048, count: 256, perToken: 8, sharedExperts: 1, groups: 8, groupsPerToken: 4,
        normalizeTopK: true, routedScalingFactor: 2.5, firstDenseLayers: 3)

    enum CodingKeys: String, CodingKey {
        case kvLoraRank = "kv_lora_rank"
        case qLoraRank = "q_lora_rank"
        case qkRopeHeadDim = "qk_rope_head_dim"
        case vHeadDim = "v_head_dim"
        case qkNopeHeadDim = "qk_nope_head_dim"
        case moeLayerFreq = "moe_layer_freq"
        case ropeInterleave = "rope_interleave"
        case numNextnPredictLayers = "num_nextn_predict_layers"
        case scoringFunc = "scoring_func"
        case topkMethod = "topk_method"
    }

    init(from decoder: Decoder) throws {
        core = try DecoderCore(from: decoder, defaults: Self.defaults)
        experts = try RoutedExperts(from: decoder, defaults: Self.expertDefaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are DeepseekV3Config's.
        kvLoraRank = try c.decodeIfPresent(Int.self, forKey: .kvLoraRank) ?? 512
        // null means "no q-LoRA", so a present null must not fall back to the default.
        qLoraRank = c.contains(.qLoraRank) ? try c.decodeIfPresent(Int.self, forKey: .qLoraRank) : 1536
        qkRopeHeadDim = try c.decodeIfPresent(Int.self, forKey: .qkRopeHeadDim) ?? 64
        vHeadDim = try c.decodeIfPresent(Int.self, forKey: .vHeadDim) ?? 128
        qkNopeHeadDim = try c.decodeIfPresent(Int.self, forKey: .qkNopeHeadDim) ?? 128
        moeLayerFreq = try c.decodeIfPresent(Int.self, forKey: .moeLayerFreq) ?? 1
        ropeInterleave = try c.decodeIfPresent(Bool.self, forKey: .ropeInterleave) ?? true
        numNextnPredictLayers = try c.decodeIfPresent(Int.self, forKey: .numNextnPredictLayers) ?? 1
        scoringFunc = try c.decodeIfPresent(String.self, forKey: .scoringFunc) ?? "sigmoid"
        topkMethod = try c.decodeIfPresent(String.self, forKey: .topkMethod) ?? "noaux_tc"
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
        guard core.rope.partialRotaryFactor == 1 else {
            throw ConfigurationError(field: "partial_rotary_factor", reason: "DeepSeek-V3 rotates all qk_rope_head_dim features")
        }
        let layers: [FeedForwardKind] = (0..<core.numHiddenLayers).map { layer in
            layer >= experts.firstDenseLayers && layer % moeLayerFreq == 0 ? .sparse : .dense(intermediateSize: core.intermediateSize)
        }
        let ropeScaling = try core.rope.scaling(maxPositionEmbeddings: core.maxPositionEmbeddings)
        let queryKeyDimension = qkNopeHeadDim + qkRopeHeadDim
        // DeepseekV3Attention.scaling = yarn_apply_mscale(rope_parameters, qk_head_dim ** -0.5)
        var softmaxScale = 1 / Double(queryKeyDimension).squareRoot()
        if case .yarn(let yarn) = ropeScaling, let all = yarn.mscaleAllDim, all != 0 {
            let m = YarnScaling.mscale(yarn.factor, all)
            softmaxScale *= m * m
        }
        var description = core.description(
            architecture: .deepseekV3,
            // The grouped-attention view of MLA's expanded form (informational; the
            // latent shape below is what the engine runs).
            attention: AttentionShape(
                heads: core.numAttentionHeads, keyValueHeads: core.numAttentionHeads, headDimension: queryKeyDimension,
                rotaryDimension: qkRopeHeadDim, ropeTheta: core.rope.theta, queryKeyNorm: false,
                queryKeyValueBias: core.attentionBias, outputBias: core.attentionBias, slidingWindow: nil,
                ropeScaling: ropeScaling, interleavedRotary: ropeInterleave),
            layers: layers,
            router: experts.router,
            hasCorrectionBias: true, moeIntermediateSize: experts.intermediateSize,
            sharedExpertIntermediateSize: experts.sharedExpertIntermediateSize)
        description.latentAttention = LatentAttentionShape(
            heads: core.numAttentionHeads, queryLoraRank: qLoraRank, keyValueLoraRank: kvLoraRank,
            nopeDimension: qkNopeHeadDim, ropeDimension: qkRopeHeadDim, valueDimension: vHeadDim,
            bias: core.attentionBias, softmaxScale: Float(softmaxScale))
        description.ignoredPredictionLayers = numNextnPredictLayers
        return description
    }
}
