import JindouRouting

// The keys llama.cpp's DeepSeek-V3-style MoE architectures on grouped-query attention share (glm4moe,
// dots1, exaone-moe, afmoe; their `load_arch_hparams` read the same LLM_KV_* keys and
// src/llama-model.cpp `load_hparams` the expert groups), read once:
//   {arch}.{expert_count, expert_used_count, expert_feed_forward_length, expert_shared_count,
//           expert_shared_feed_forward_length (exaone-moe), expert_group_count,
//           expert_group_used_count, expert_gating_func (2 = sigmoid), expert_weights_scale
//           (0: none), expert_weights_norm (default false), leading_dense_block_count,
//           feed_forward_length (the dense layers)}
//   blk.N.exp_probs_b.bias: the selection bias, where present (in every MoE layer or none).

/// A GGUF file's routed feed-forward: the layers, the router and the expert widths.
struct GGUFRoutedFeedForward {
    var layers: [FeedForwardKind]
    var router: RouterConfiguration
    var moeIntermediateSize: Int
    var sharedExpertIntermediateSize: Int?
    var hasCorrectionBias: Bool
}

extension GGUFModelMetadata {
    /// The sigmoid-routed feed-forward of `layerCount` decoder layers, with llama.cpp's
    /// defaults. `family` names the model in errors; `defaultGating` is what llama.cpp assumes
    /// when `expert_gating_func` is absent (nil: llama.cpp cannot run the file without it);
    /// `defaultSharedExperts` likewise for `expert_shared_count` (nil: required).
    func sigmoidRoutedFeedForward(layerCount: Int, family: String, defaultGating: Int?,
                                  defaultSharedExperts: Int? = nil) throws -> GGUFRoutedFeedForward {
        let gating: Int
        if let defaultGating {
            gating = try integer(arch("expert_gating_func"), default: defaultGating)
        } else {
            guard value(arch("expert_gating_func")) != nil else {
                throw error(arch("expert_gating_func"), "is missing; llama.cpp cannot route \(family) without it (convert_hf_to_gguf.py writes it from config.json's scoring_func)")
            }
            gating = try integer(arch("expert_gating_func"))
        }
        guard gating == 2 else {
            let name = [1: "softmax", 3: "softmax_weight", 4: "sqrtsoftplus"][gating].map { " (\($0))" } ?? ""
            throw error(arch("expert_gating_func"), "is \(gating)\(name); \(family) routes with sigmoid (2)")
        }
        let experts = try positive(arch("expert_count"))
        let used = try positive(arch("expert_used_count"))
        let moe = try positive(arch("expert_feed_forward_length"))
        let shared = try integer(arch("expert_shared_count"), default: defaultSharedExperts)
        let sharedWidth = shared == 0 ? nil : try positive(arch("expert_shared_feed_forward_length"), default: moe * shared)
        let groups = try integer(arch("expert_group_count"), default: 0)
        let groupsUsed = try integer(arch("expert_group_used_count"), default: 0)
        if groups > 1 {
            guard experts % groups == 0 else {
                throw error(arch("expert_group_count"), "\(groups) does not divide expert_count \(experts)")
            }
            guard (1...groups).contains(groupsUsed) else {
                throw error(arch("expert_group_used_count"), "\(groupsUsed) is not in 1…expert_group_count (\(groups))")
            }
        }
        let scale = try routedScalingFactor()

        let denseLead = try integer(arch("leading_dense_block_count"), default: 0)
        guard denseLead <= layerCount else {
            throw error(arch("leading_dense_block_count"), "is \(denseLead), more than the \(layerCount) decoder layers")
        }
        let feedForward = try integer(arch("feed_forward_length"), default: 0)
        if denseLead > 0, feedForward == 0 {
            throw error(arch("feed_forward_length"), "is needed for the \(denseLead) leading dense layers")
        }
        for fused in ["attn_qkv.weight", "ffn_gate_up_exps.weight"] {
            if let layer = (0..<layerCount).first(where: { file.tensor("blk.\($0).\(fused)") != nil }) {
                throw GGUFError(path: file.path, reason: "tensor 'blk.\(layer).\(fused)' is fused (convert_hf_to_gguf.py --fuse-qkv / --fuse-gate-up-exps); Jindou reads the unfused tensors")
            }
        }
        let moeLayers = Array(denseLead..<layerCount)
        let correctionBias = try sameInEveryLayer(["exp_probs_b.bias"], layers: moeLayers)
        return GGUFRoutedFeedForward(
            layers: (0..<layerCount).map { $0 < denseLead ? .dense(intermediateSize: feedForward) : .sparse },
            router: RouterConfiguration(
                expertCount: experts, expertsPerToken: used, scoring: .sigmoid,
                normalizeTopK: try bool(arch("expert_weights_norm"), default: false),
                routedScalingFactor: scale,
                groupCount: groups > 1 ? groups : 1, groupsPerToken: groups > 1 ? groupsUsed : 1,
                // The transformers routers' epsilon (llama.cpp clamps the sum at 6.1e-5 instead;
                // a sum of sigmoids that small does not occur in practice).
                normalizationEpsilon: 1e-20),
            moeIntermediateSize: moe,
            sharedExpertIntermediateSize: sharedWidth,
            hasCorrectionBias: correctionBias)
    }

    /// Whether `layers` carry the optional tensors `suffixes` (all of them in every layer, or
    /// none anywhere); llama.cpp decides per layer, Jindou needs every layer alike.
    func sameInEveryLayer(_ suffixes: [String], layers: some Collection<Int>) throws -> Bool {
        guard let first = layers.first else { return false }
        let present = file.tensor("blk.\(first).\(suffixes[0])") != nil
        for layer in layers {
            for suffix in suffixes where (file.tensor("blk.\(layer).\(suffix)") != nil) != present {
                throw GGUFError(path: file.path, reason: "tensor 'blk.\(layer).\(suffix)' is \(present ? "missing while" : "present while") 'blk.\(first).\(suffixes[0])' is \(present ? "present" : "not"); Jindou needs every layer alike")
            }
        }
        return present
    }

    /// A description of grouped-query attention (q/k/v biases and per-head q/k norms as the
    /// tensors say, the norms required unless `optionalQueryKeyNorm`) and the routed
    /// feed-forward above, over `layerCount` decoder layers (default `block_count`): what
    /// glm4moe, dots1, exaone-moe and afmoe share.
    func groupedQueryMoE(architecture: Architecture, family: String, defaultGating: Int?, defaultSharedExperts: Int? = nil,
                         layerCount: Int? = nil, optionalQueryKeyNorm: Bool = false) throws -> ModelDescription {
        let layerCount = try layerCount ?? positive(arch("block_count"))
        let hidden = try positive(arch("embedding_length"))
        let (heads, kvHeads, headDimension, rotary) = try attentionHeads(hidden: hidden)
        let feedForward = try sigmoidRoutedFeedForward(layerCount: layerCount, family: family, defaultGating: defaultGating,
                                                       defaultSharedExperts: defaultSharedExperts)
        let all = 0..<layerCount
        let queryKeyNorm = try sameInEveryLayer(["attn_q_norm.weight", "attn_k_norm.weight"], layers: all)
        guard queryKeyNorm || optionalQueryKeyNorm else {
            throw GGUFError(path: file.path, reason: "missing tensor 'blk.0.attn_q_norm.weight' (\(family) normalises queries and keys per head)")
        }
        return ModelDescription(
            architecture: architecture,
            vocabularySize: try vocabularySize(),
            hiddenSize: hidden,
            attention: AttentionShape(
                heads: heads, keyValueHeads: kvHeads, headDimension: headDimension, rotaryDimension: rotary,
                ropeTheta: try number(arch("rope.freq_base"), default: 10_000),
                queryKeyNorm: queryKeyNorm, queryKeyValueBias: try sameInEveryLayer(["attn_q.bias", "attn_k.bias", "attn_v.bias"], layers: all),
                outputBias: false, slidingWindow: nil),
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: feedForward.layers,
            router: feedForward.router,
            hasCorrectionBias: feedForward.hasCorrectionBias,
            moeIntermediateSize: feedForward.moeIntermediateSize,
            sharedExpertIntermediateSize: feedForward.sharedExpertIntermediateSize,
            maxPositionEmbeddings: try positive(arch("context_length")),
            eosTokenIDs: try tokenIDs(["eos", "eot", "eom"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil)
    }

    /// Which decoder layers slide, as llama.cpp's `load_swa_pattern` reads it: the per-layer
    /// `attention.sliding_window_pattern` array, or its period n (layer l slides unless
    /// l % n == n − 1; 0: every layer), or `defaultPeriod`.
    func slidingLayers(_ layerCount: Int, defaultPeriod: Int) throws -> [Bool] {
        let key = arch("attention.sliding_window_pattern")
        if let list = value(key)?.array {
            let flags: [Bool] = list.compactMap { if case .bool(let b) = $0 { b } else { nil } }
            guard flags.count == list.count, flags.count >= layerCount else {
                throw error(key, "is not an array of \(layerCount) bools")
            }
            return Array(flags.prefix(layerCount))
        }
        let period = try integer(key, default: defaultPeriod)
        return (0..<layerCount).map { period == 0 || $0 % period < period - 1 }
    }
}
