// Kimi-Linear (48B-A3B) and Ling-3.0-Flash (`bailing_hybrid`, at the end), mirroring transformers' `models/kimi_linear/modular_kimi_linear.py`:
// - `KimiLinearDecoderLayer`: the token mixer per `layer_types` — `linear_attention` → Kimi
//   Delta Attention (`KimiLinearDeltaAttention`, GatedDeltaNet.swift's `.kimiDelta`), and
//   `full_attention` → `KimiLinearAttention`, DeepSeek-V3's latent attention with no rotary
//   at all (its "rope" key part is cached and read unrotated) and scale qk_head_dim^-½;
//   the feed-forward per `mlp_layer_types`: dense `mlp.` or DeepSeek-V3's MoE under
//   `block_sparse_moe.` (sigmoid router with a correction bias, groups, shared experts,
//   experts `w1`/`w3`/`w2`). Plain RMSNorms (ε `rms_norm_eps`).
// - config.json as transformers writes it (`num_experts`, `num_experts_per_token`,
//   `moe_renormalize`, `num_expert_group`, `num_shared_experts`, `model_max_length`,
//   `layer_types`, `linear_*`) or as the Hub's remote code does (`linear_attn_config` with
//   1-indexed `full_attn_layers`/`kda_layers`, `first_k_dense_replace`).
// - Ling-3.0-Flash (`models/bailing_hybrid/modular_bailing_hybrid.py`): the same layer kinds with
//   Ling's KDA (GatedDeltaNet.swift's `.lingDelta`), MLA with interleaved rotary (θ 6e6) and a
//   sigmoid gate per head (`g_proj`), DeepSeek-V3's grouped router with `expert_bias`, in the
//   Hub's names; `layer_group_size` (every 6th layer full), `first_k_dense_replace` 2 by default.

import Foundation
import JindouRouting

/// `KimiLinearConfig`.
struct KimiLinearConfiguration: Decodable {
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var moeIntermediateSize: Int
    var numHiddenLayers: Int
    var numExperts: Int
    var numExpertsPerToken: Int
    var numAttentionHeads: Int
    var routedScalingFactor: Double
    var qLoraRank: Int?
    var kvLoraRank: Int
    var qkNopeHeadDim: Int
    var qkRopeHeadDim: Int
    var vHeadDim: Int
    var numExpertGroup: Int
    var topkGroup: Int
    var numSharedExperts: Int
    var moeRenormalize: Bool
    var maxPositionEmbeddings: Int
    var rmsNormEps: Double
    var tieWordEmbeddings: Bool
    var attentionBias: Bool
    var layerTypes: [String]
    var mlpLayerTypes: [String]
    var linear: LinearAttentionShape
    var hiddenAct: String
    var bosTokenID: Int?
    var eosTokenID: [Int]
    /// Ling (bailing_hybrid, LingHybrid.swift) reads the same keys with its own defaults, a rotary,
    /// the bounded forget gate and SwiGLU limits.
    var ling = false
    var rope = RopeSettings(theta: 10_000, partialRotaryFactor: 1, type: "default")
    var safeGate = false
    var gateLowerBound = -5.0
    var swigluLimits: [Double] = []

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case moeIntermediateSize = "moe_intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numExperts = "num_experts", nRoutedExperts = "n_routed_experts", numLocalExperts = "num_local_experts"
        case numExpertsPerToken = "num_experts_per_token", numExpertsPerTok = "num_experts_per_tok"
        case numAttentionHeads = "num_attention_heads", routedScalingFactor = "routed_scaling_factor"
        case qLoraRank = "q_lora_rank", kvLoraRank = "kv_lora_rank", qkNopeHeadDim = "qk_nope_head_dim"
        case qkRopeHeadDim = "qk_rope_head_dim", vHeadDim = "v_head_dim"
        case numExpertGroup = "num_expert_group", nGroup = "n_group", topkGroup = "topk_group"
        case numSharedExperts = "num_shared_experts", nSharedExperts = "n_shared_experts"
        case moeRenormalize = "moe_renormalize", normTopkProb = "norm_topk_prob"
        case modelMaxLength = "model_max_length", maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps", tieWordEmbeddings = "tie_word_embeddings", attentionBias = "attention_bias"
        case layerTypes = "layer_types", mlpLayerTypes = "mlp_layer_types", firstKDenseReplace = "first_k_dense_replace"
        case linearHeadDim = "linear_head_dim", linearNumHeads = "linear_num_heads", linearConvKernelDim = "linear_conv_kernel_dim"
        case linearAttnConfig = "linear_attn_config", hiddenAct = "hidden_act"
        case bosTokenID = "bos_token_id", eosTokenID = "eos_token_id"
        case ropeParameters = "rope_parameters", ropeScaling = "rope_scaling", ropeTheta = "rope_theta"
        case partialRotaryFactor = "partial_rotary_factor"
        case headDim = "head_dim", shortConvKernelSize = "short_conv_kernel_size", layerGroupSize = "layer_group_size"
        case kdaSafeGate = "kda_safe_gate", kdaLowerBound = "kda_lower_bound"
        case expertSwigluLimitList = "expert_swiglu_limit_list", shareExpertSwigluLimitList = "share_expert_swiglu_limit_list"
    }

    /// The Hub's `linear_attn_config`.
    private struct LinearAttentionConfig: Decodable {
        let headDim: Int?
        let numHeads: Int?
        let shortConvKernelSize: Int?
        let fullAttnLayers: [Int]?
        let kdaLayers: [Int]?
        enum CodingKeys: String, CodingKey {
            case headDim = "head_dim", numHeads = "num_heads", shortConvKernelSize = "short_conv_kernel_size"
            case fullAttnLayers = "full_attn_layers", kdaLayers = "kda_layers"
        }
    }

    init(from decoder: Decoder) throws { try self.init(decoder, ling: false) }

    /// `ling`: BailingHybridConfig's defaults and keys (rotary, safe gate, SwiGLU limits).
    init(_ decoder: Decoder, ling: Bool) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func int(_ keys: CodingKeys..., default value: Int) throws -> Int {
            for key in keys { if let v = try c.decodeIfPresent(Int.self, forKey: key) { return v } }
            return value
        }
        self.ling = ling
        // Defaults are KimiLinearConfig's or BailingHybridConfig's (and DeepseekV3Config's where they inherit them).
        vocabSize = try int(.vocabSize, default: ling ? 157_184 : 163_840)
        hiddenSize = try int(.hiddenSize, default: ling ? 2560 : 2304)
        intermediateSize = try int(.intermediateSize, default: ling ? 6144 : 9216)
        moeIntermediateSize = try int(.moeIntermediateSize, default: ling ? 768 : 1024)
        numHiddenLayers = try int(.numHiddenLayers, default: ling ? 42 : 27)
        numExperts = try int(.numExperts, .numLocalExperts, .nRoutedExperts, default: ling ? 512 : 256)
        numExpertsPerToken = try int(.numExpertsPerToken, .numExpertsPerTok, default: 8)
        numAttentionHeads = try int(.numAttentionHeads, default: 32)
        routedScalingFactor = try c.decodeIfPresent(Double.self, forKey: .routedScalingFactor) ?? (ling ? 2.5 : 2.446)
        qLoraRank = try c.decodeIfPresent(Int.self, forKey: .qLoraRank)
        kvLoraRank = try int(.kvLoraRank, default: 512)
        qkNopeHeadDim = try int(.qkNopeHeadDim, default: 128)
        qkRopeHeadDim = try int(.qkRopeHeadDim, default: 64)
        vHeadDim = try int(.vHeadDim, default: 128)
        numExpertGroup = try int(.numExpertGroup, .nGroup, default: ling ? 8 : 1)
        topkGroup = try int(.topkGroup, default: ling ? 4 : 1)
        numSharedExperts = try int(.numSharedExperts, .nSharedExperts, default: 1)
        moeRenormalize = try c.decodeIfPresent(Bool.self, forKey: .moeRenormalize)
            ?? c.decodeIfPresent(Bool.self, forKey: .normTopkProb) ?? true
        maxPositionEmbeddings = try int(.modelMaxLength, .maxPositionEmbeddings, default: ling ? 262_144 : 1_048_576)
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? (ling ? 1e-6 : 1e-5)
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        bosTokenID = try c.specialToken(.bosTokenID, default: ling ? nil : 163_584)
        eosTokenID = try c.specialTokens(.eosTokenID, default: [ling ? 156_895 : 163_586])
        if ling {
            rope = try RopeSettings.decode(from: c, parameters: .ropeParameters, theta: .ropeTheta, partialFactor: .partialRotaryFactor,
                                           scaling: .ropeScaling, defaultTheta: 6_000_000, defaultPartialFactor: 1)
            safeGate = try c.decodeIfPresent(Bool.self, forKey: .kdaSafeGate) ?? true
            gateLowerBound = try c.decodeIfPresent(Double.self, forKey: .kdaLowerBound) ?? -5
            swigluLimits = (try c.decodeIfPresent([Double].self, forKey: .expertSwigluLimitList) ?? [])
                + (try c.decodeIfPresent([Double].self, forKey: .shareExpertSwigluLimitList) ?? [])
        } else {
            // KimiLinearConfig has no rotary: a config asking for one is another model.
            for key in [CodingKeys.ropeParameters, .ropeScaling] where c.contains(key) {
                if try !c.decodeNil(forKey: key) {
                    throw ConfigurationError(field: key.rawValue, reason: "Kimi-Linear's attention has no rotary")
                }
            }
        }
        let hub = try c.decodeIfPresent(LinearAttentionConfig.self, forKey: .linearAttnConfig)
        // Ling: BailingHybridConfig sets linear_* from head_dim, num_attention_heads, short_conv_kernel_size.
        let heads = try hub?.numHeads ?? int(.linearNumHeads, default: ling ? numAttentionHeads : 32)
        let headDim = try hub?.headDim ?? int(.linearHeadDim, .headDim, default: 128)
        linear = LinearAttentionShape(
            keyHeads: heads, valueHeads: heads, keyHeadDimension: headDim, valueHeadDimension: headDim,
            convolutionKernel: try hub?.shortConvKernelSize ?? int(.linearConvKernelDim, .shortConvKernelSize, default: 4))
        linear.kind = ling ? .lingDelta : .kimiDelta
        if ling && safeGate { linear.forgetGateLowerBound = Float(gateLowerBound) }
        let layers = numHiddenLayers
        if let types = try c.decodeIfPresent([String].self, forKey: .layerTypes) {
            layerTypes = types
        } else if let full = hub?.fullAttnLayers, let kda = hub?.kdaLayers {
            // 1-indexed in the Hub's config.
            var types = [String](repeating: "", count: layers)
            for l in full where (1...layers).contains(l) { types[l - 1] = "full_attention" }
            for l in kda where (1...layers).contains(l) { types[l - 1] = "linear_attention" }
            layerTypes = types
        } else if ling {
            let group = try int(.layerGroupSize, default: 6)
            layerTypes = (0..<layers).map { ($0 + 1) % max(group, 1) == 0 ? "full_attention" : "linear_attention" }
        } else {
            layerTypes = (0..<layers).map { $0 > 0 && $0 % 4 == 0 ? "full_attention" : "linear_attention" }
        }
        let firstDense = try int(.firstKDenseReplace, default: ling ? 2 : 1)
        mlpLayerTypes = try c.decodeIfPresent([String].self, forKey: .mlpLayerTypes)
            ?? (0..<layers).map { $0 < firstDense ? "dense" : "sparse" }
    }

    func description() throws -> ModelDescription {
        guard swigluLimits.allSatisfy({ $0 == 0 }) else {
            throw ConfigurationError(field: "expert_swiglu_limit_list",
                                     reason: "non-zero SwiGLU clipping limits (Step3p7's clamp) are not implemented")
        }
        guard hiddenAct == "silu" else {
            throw ConfigurationError(field: "hidden_act", reason: "'\(hiddenAct)' is not supported (Kimi-Linear uses silu)")
        }
        guard linear.keyHeads > 0, linear.keyHeadDimension > 0, linear.convolutionKernel >= 1 else {
            throw ConfigurationError(field: "linear_attn_config", reason: "heads, head_dim and the conv kernel must be positive")
        }
        let linearLayers = try LayerTypes.linear(layerTypes, layers: numHiddenLayers)
        let layers = try LayerTypes.feedForward(mlpLayerTypes, layers: numHiddenLayers, intermediateSize: intermediateSize)
        let queryKeyDimension = qkNopeHeadDim + qkRopeHeadDim
        var description = ModelDescription(
            architecture: ling ? .bailingHybrid : .kimiLinear,
            vocabularySize: vocabSize,
            hiddenSize: hiddenSize,
            attention: AttentionShape(
                heads: numAttentionHeads, keyValueHeads: numAttentionHeads, headDimension: queryKeyDimension,
                rotaryDimension: qkRopeHeadDim, ropeTheta: rope.theta, queryKeyNorm: false,
                queryKeyValueBias: attentionBias, outputBias: attentionBias, slidingWindow: nil,
                ropeScaling: try rope.scaling(maxPositionEmbeddings: maxPositionEmbeddings), interleavedRotary: true),
            rmsNormEpsilon: Float(rmsNormEps),
            tieWordEmbeddings: tieWordEmbeddings,
            layers: layers,
            router: RouterConfiguration(
                expertCount: numExperts, expertsPerToken: numExpertsPerToken, scoring: .sigmoid,
                normalizeTopK: moeRenormalize, routedScalingFactor: Float(routedScalingFactor),
                groupCount: numExpertGroup, groupsPerToken: topkGroup, normalizationEpsilon: 1e-20),
            hasCorrectionBias: true,
            moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: numSharedExperts > 0 ? moeIntermediateSize * numSharedExperts : nil,
            maxPositionEmbeddings: maxPositionEmbeddings,
            eosTokenIDs: eosTokenID,
            bosTokenID: bosTokenID,
            declaredDType: nil)
        var latent = LatentAttentionShape(
            heads: numAttentionHeads, queryLoraRank: qLoraRank, keyValueLoraRank: kvLoraRank,
            nopeDimension: qkNopeHeadDim, ropeDimension: qkRopeHeadDim, valueDimension: vHeadDim,
            bias: attentionBias, softmaxScale: 1 / Float(queryKeyDimension).squareRoot())
        description.linearAttention = linear
        description.linearAttentionLayers = linearLayers
        if ling {
            // BailingHybridAttention: interleaved rotary, a sigmoid gate per head; the Hub's
            // names (`attention.`, `dense`, `word_embeddings`, `gate.expert_bias`).
            latent.headGate = true
            latent.outputName = "dense"
            description.latentAttention = latent
            description.attentionModule = "attention."
            description.linearAttentionModule = "attention."
            description.embeddingModule = "word_embeddings"
            description.moeNames.correctionBias = "gate.expert_bias"
            return description
        }
        latent.rotary = false
        description.latentAttention = latent
        description.linearAttentionModule = "self_attn."
        var names = MoENames.mixtral
        names.correctionBias = "gate.e_score_correction_bias"
        names.sharedExperts = "shared_experts."
        description.moeNames = names
        return description
    }
}

enum KimiLinearFamily: ArchitectureDefinition {
    static let architecture = Architecture.kimiLinear
    static let modelTypes = ["kimi_linear"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(KimiLinearConfiguration.self, configJSON) }
}

extension KimiLinearConfiguration: DescribedConfiguration {}

/// `BailingHybridConfig` (Ling-3.0-Flash): Kimi-Linear's keys with Ling's defaults and its own.
struct LingHybridConfiguration: Decodable, DescribedConfiguration {
    var base: KimiLinearConfiguration
    init(from decoder: Decoder) throws { base = try KimiLinearConfiguration(decoder, ling: true) }
    func description() throws -> ModelDescription { try base.description() }
}

enum LingHybridFamily: ArchitectureDefinition {
    static let architecture = Architecture.bailingHybrid
    static let modelTypes = ["bailing_hybrid"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(LingHybridConfiguration.self, configJSON) }
}
