import Foundation
import JindouNumerics
import JindouRouting

// llama.cpp's `deepseek2` architecture (DeepSeek-V2/V3, Kimi-K2) as a GGUF weight source,
// following its converter (conversion/deepseek.py `DeepseekV2Model`), loader and graph
// (src/models/deepseek2.cpp) and context setup (src/llama-context.cpp, YaRN):
//
// Tensors, per layer `blk.N.`: attn_norm, attn_q_a + attn_q_a_norm + attn_q_b (or attn_q
// without q-LoRA), attn_kv_a_mqa ([latent | k_rot] rows), attn_kv_a_norm, attn_k_b
// ([heads, kv_lora_rank, nope]: each head's k_nope rows of kv_b_proj, transposed) and attn_v_b
// ([heads, v, kv_lora_rank]) — or, in files written before the converter split it, attn_kv_b
// (kv_b_proj as is) —, attn_output, ffn_norm; dense layers ffn_{gate,up,down}; MoE layers
// ffn_gate_inp, exp_probs_b.bias (e_score_correction_bias), ffn_{gate,up,down}_exps and the
// shared experts ffn_{gate,up,down}_shexp. Multi-token-prediction layers are not converted
// (or, with `nextn_predict_layers`, sit after the decoder layers and are never mapped).
//
// Rotary: llama.cpp rotates deepseek2 with LLAMA_ROPE_TYPE_NORM, pairs of adjacent features,
// and the converter copies q_b_proj / kv_a_proj_with_mqa unpermuted, whatever the config's
// `rope_interleave` says. So a file means transformers' `rope_interleave: true` (DeepSeek's and
// Kimi's checkpoints): Jindou rotates adjacent pairs of the columns as stored. A checkpoint
// with `rope_interleave: false` converts to a file that llama.cpp, and so Jindou, runs as the
// interleaved model — a different one.
//
// YaRN: the file carries factor, original_context_length, yarn_beta_fast/slow and
// `yarn_log_multiplier` = 0.1 · mscale_all_dim, but not `mscale`. llama.cpp assumes
// mscale = mscale_all_dim (llama-context.cpp, TAG_DEEPSEEK2_YARN_LOG_MUL_FIX), so the cos/sin
// attention factor mscale(f, mscale)/mscale(f, mscale_all_dim) is 1, and the softmax scale is
// qk_head_dim^-0.5 · mscale(f, mscale_all_dim)² (deepseek2.cpp's kq_scale); without
// yarn_log_multiplier both cos/sin and the softmax scale get mscale(f, 1) (kq_scale squared).
// Jindou does the same. Real DeepSeek-V3 and Kimi-K2 configs have mscale = mscale_all_dim,
// where this equals transformers. One difference, deliberate: llama.cpp's deepseek2 ignores the
// file's yarn_beta_fast/slow (always 32/1); Jindou reads them, as transformers does with the
// config's values (Kimi-K2 has beta_fast = beta_slow = 1).
//
// Routing: `expert_gating_func` 2 (sigmoid) with e_score_correction_bias, groups
// (`expert_group_count`, `expert_group_used_count`, scored by the sum of their top two),
// renormalised when `expert_weights_norm`, times `expert_weights_scale` — DeepSeek-V3's
// router. Softmax gating (DeepSeek-V2, and what llama.cpp assumes when the key is missing) is
// refused, as the safetensors path refuses `scoring_func: softmax`.

extension GGUFTensorNames {
    /// DeepSeek-V3's attention tensors (gguf-py tensor_mapping.py): Hugging Face suffix after
    /// `model.layers.N.` → GGUF suffix after `blk.N.`. `k_b_proj` / `v_b_proj` are the
    /// converter's names for the halves of kv_b_proj it writes as attn_k_b / attn_v_b.
    static let deepseek2LayerSuffixes: [String: String] = [
        "self_attn.q_a_proj.weight": "attn_q_a.weight",
        "self_attn.q_a_layernorm.weight": "attn_q_a_norm.weight",
        "self_attn.q_b_proj.weight": "attn_q_b.weight",
        "self_attn.kv_a_proj_with_mqa.weight": "attn_kv_a_mqa.weight",
        "self_attn.kv_a_layernorm.weight": "attn_kv_a_norm.weight",
        "self_attn.kv_b_proj.weight": "attn_kv_b.weight",
        "self_attn.k_b_proj.weight": "attn_k_b.weight",
        "self_attn.v_b_proj.weight": "attn_v_b.weight",
    ]
}

extension GGUFModelMetadata {
    /// llama.cpp's `expert_gating_func` values (src/llama-hparams.h).
    static let gatingFunctionNames = [0: "none", 1: "softmax", 2: "sigmoid", 3: "softmax_weight", 4: "sqrt_softplus"]

    /// `deepseek2`: DeepSeek-V3 and Kimi-K2 as llama.cpp's converter writes them (see the file
    /// comment for what the metadata cannot say and what Jindou assumes then).
    func deepseek2() throws -> ModelDescription {
        let path = file.path
        let (layerCount, predictionLayers) = try decoderLayers()
        let hidden = try positive(arch("embedding_length"))
        let heads = try positive(arch("attention.head_count"))

        // MLA shape. Files since the k_b/v_b split give the per-head query/key and value widths
        // as key_length_mla / value_length_mla (key_length is then kv_lora_rank + rope, the
        // absorbed head); older files have them as key_length / value_length and store attn_kv_b.
        let keyValueRank = try positive(arch("attention.kv_lora_rank"))
        let queryRank: Int? = value(arch("attention.q_lora_rank")) != nil ? try positive(arch("attention.q_lora_rank")) : nil
        let mla = value(arch("attention.key_length_mla")) != nil
        let queryKey = try positive(arch(mla ? "attention.key_length_mla" : "attention.key_length"))
        let valueWidth = try positive(arch(mla ? "attention.value_length_mla" : "attention.value_length"))
        let rope = try positive(arch("rope.dimension_count"))
        guard rope % 2 == 0, rope < queryKey else {
            throw error(arch("rope.dimension_count"), "is \(rope); it must be even and less than the query/key head width \(queryKey)")
        }
        let split = file.tensor("blk.0.attn_k_b.weight") != nil
        if !split && file.tensor("blk.0.attn_kv_b.weight") == nil {
            throw GGUFError(path: path, reason: "missing tensor 'blk.0.attn_k_b.weight' (or the older 'blk.0.attn_kv_b.weight')")
        }

        // Rotary embedding and softmax scale, as llama.cpp computes them (file comment).
        let theta = try number(arch("rope.freq_base"), default: 10_000)
        let contextLength = try positive(arch("context_length"))
        var scaling = RopeScaling.none
        var softmaxScale = 1 / Double(queryKey).squareRoot()
        var scalingType = "none"
        if let type = value(arch("rope.scaling.type")) {
            guard let name = type.string else { throw error(arch("rope.scaling.type"), "is not a string") }
            scalingType = name
        }
        // llama.cpp's default type is linear; with a factor of 1 it scales nothing.
        if scalingType == "linear", try number(arch("rope.scaling.factor"), default: 1) == 1 { scalingType = "none" }
        switch scalingType {
        case "none":
            break
        case "yarn":
            let factor = try number(arch("rope.scaling.factor"))
            guard factor >= 1 else { throw error(arch("rope.scaling.factor"), "is \(factor); YaRN needs a factor of at least 1") }
            for key in ["rope.scaling.attn_factor", "rope.scaling.yarn_attn_factor", "rope.scaling.yarn_ext_factor"] {
                if value(arch(key)) != nil {
                    throw error(arch(key), "is not supported for deepseek2 (DeepSeek-V3 and Kimi-K2 files do not carry it)")
                }
            }
            let allDimensions: Double? = value(arch("rope.scaling.yarn_log_multiplier")) != nil
                ? try number(arch("rope.scaling.yarn_log_multiplier")) / 0.1 : nil
            let mscale = YarnScaling.mscale(factor, allDimensions ?? 1)
            softmaxScale *= mscale * mscale
            scaling = .yarn(YarnScaling(
                factor: factor, originalMaxPositions: try positive(arch("rope.scaling.original_context_length"), default: contextLength),
                betaFast: try number(arch("rope.scaling.yarn_beta_fast"), default: 32),
                betaSlow: try number(arch("rope.scaling.yarn_beta_slow"), default: 1),
                attentionFactor: allDimensions == nil ? mscale : 1, mscaleAllDim: allDimensions, truncate: true))
        default:
            throw error(arch("rope.scaling.type"), "'\(scalingType)' is not supported for deepseek2 (supported: none, yarn)")
        }

        // Routing: DeepSeek-V3's sigmoid router only.
        let gating = try integer(arch("expert_gating_func"), default: 0)
        guard gating == 2 else {
            let name = Self.gatingFunctionNames[gating] ?? "\(gating)"
            let reason = value(arch("expert_gating_func")) == nil
                ? "is missing; llama.cpp then scores experts with softmax (DeepSeek-V2)"
                : "is \(gating) (\(name))"
            throw error(arch("expert_gating_func"), "\(reason), but Jindou serves DeepSeek-V3's sigmoid routing only (2)")
        }
        let experts = try positive(arch("expert_count"))
        let used = try positive(arch("expert_used_count"))
        let groups = try positive(arch("expert_group_count"), default: 1)
        let scale = try number(arch("expert_weights_scale"), default: 1)
        let moe = try positive(arch("expert_feed_forward_length"))
        let shared = try integer(arch("expert_shared_count"))  // required by llama.cpp too
        let leadingDense = try integer(arch("leading_dense_block_count"), default: 0)
        let feedForward = leadingDense > 0 ? try positive(arch("feed_forward_length")) : 0
        let layers: [FeedForwardKind] = (0..<layerCount).map { $0 < leadingDense ? .dense(intermediateSize: feedForward) : .sparse }

        let vocabulary = try vocabularySize()
        let firstSparse = leadingDense < layerCount ? leadingDense : nil
        var description = ModelDescription(
            architecture: .deepseekV3,
            vocabularySize: vocabulary,
            hiddenSize: hidden,
            // The grouped-attention view of MLA's expanded form, as DeepseekV3Configuration gives it.
            attention: AttentionShape(
                heads: heads, keyValueHeads: heads, headDimension: queryKey, rotaryDimension: rope, ropeTheta: theta,
                queryKeyNorm: false, queryKeyValueBias: false, outputBias: false, slidingWindow: nil,
                ropeScaling: scaling, interleavedRotary: true),
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: layers,
            router: RouterConfiguration(
                expertCount: experts, expertsPerToken: used, scoring: .sigmoid,
                normalizeTopK: try bool(arch("expert_weights_norm"), default: false),
                routedScalingFactor: Float(scale == 0 ? 1 : scale),
                groupCount: groups, groupsPerToken: try positive(arch("expert_group_used_count"), default: groups),
                normalizationEpsilon: 1e-20),
            hasCorrectionBias: firstSparse.map { file.tensor("blk.\($0).exp_probs_b.bias") != nil } ?? false,
            moeIntermediateSize: moe,
            sharedExpertIntermediateSize: shared > 0 ? moe * shared : nil,
            maxPositionEmbeddings: contextLength,
            eosTokenIDs: try tokenIDs(["eos", "eot"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil)
        var latent = LatentAttentionShape(
            heads: heads, queryLoraRank: queryRank, keyValueLoraRank: keyValueRank, nopeDimension: queryKey - rope,
            ropeDimension: rope, valueDimension: valueWidth, bias: false, softmaxScale: Float(softmaxScale))
        latent.upProjections = split ? .split : .joint
        description.latentAttention = latent
        description.ignoredPredictionLayers = predictionLayers
        return try validated(description)
    }
}

extension GGUFExport {
    /// `deepseek2` metadata as llama.cpp's converter writes it for DeepSeek-V3 / Kimi-K2
    /// (`DeepseekV2Model.set_gguf_parameters`). What the file cannot carry is refused, naming
    /// the config field: `rope_interleave: false` (llama.cpp rotates adjacent pairs), YaRN whose
    /// cos/sin factor is not the one llama.cpp derives (`mscale` ≠ `mscale_all_dim`, or no
    /// `mscale_all_dim`), untruncated YaRN, attention biases.
    static func deepseek2Metadata(_ d: ModelDescription, path: String) throws -> [(String, GGUFWriter.Value)] {
        guard let m = d.latentAttention else { throw GGUFError(path: path, reason: "a DeepSeek-V3 description without latent attention") }
        func refuse(_ field: String, _ reason: String) -> GGUFError {
            GGUFError(path: path, reason: "\(field) \(reason); llama.cpp's deepseek2 file cannot say that, so it is not written")
        }
        guard d.attention.interleavedRotary else {
            throw refuse("rope_interleave: false", "rotates halves of the rope features")
        }
        guard !m.bias else { throw refuse("attention_bias: true", "adds biases to q_a_proj, kv_a_proj_with_mqa and o_proj") }
        let arch = "deepseek2"
        let dense = d.layers.prefix { $0 != .sparse }
        let denseIntermediate = dense.compactMap { if case .dense(let size) = $0 { size } else { nil } }.first
        guard d.layers.dropFirst(dense.count).allSatisfy({ $0 == .sparse }) else {
            throw refuse("the layer pattern (moe_layer_freq)", "has dense layers after the first MoE layer")
        }
        var metadata: [(String, GGUFWriter.Value)] = [
            ("\(arch).block_count", .u32(UInt32(d.layerCount))),
            ("\(arch).context_length", .u32(UInt32(d.maxPositionEmbeddings))),
            ("\(arch).embedding_length", .u32(UInt32(d.hiddenSize))),
            ("\(arch).feed_forward_length", .u32(UInt32(denseIntermediate ?? d.moeIntermediateSize))),
            ("\(arch).attention.head_count", .u32(UInt32(m.heads))),
            ("\(arch).attention.head_count_kv", .u32(1)),
            ("\(arch).rope.freq_base", .f32(Float(d.attention.ropeTheta))),
            ("\(arch).attention.layer_norm_rms_epsilon", .f32(d.rmsNormEpsilon)),
            ("\(arch).expert_count", .u32(UInt32(d.expertCount))),
            ("\(arch).expert_used_count", .u32(UInt32(d.router.expertsPerToken))),
            ("\(arch).expert_group_count", .u32(UInt32(d.router.groupCount))),
            ("\(arch).expert_group_used_count", .u32(UInt32(d.router.groupsPerToken))),
            ("\(arch).expert_gating_func", .u32(2)),
            ("\(arch).attention.key_length", .u32(UInt32(m.cacheRowWidth))),
            ("\(arch).attention.value_length", .u32(UInt32(m.keyValueLoraRank))),
            ("\(arch).leading_dense_block_count", .u32(UInt32(dense.count))),
            ("\(arch).vocab_size", .u32(UInt32(d.vocabularySize))),
        ]
        if let rank = m.queryLoraRank { metadata.append(("\(arch).attention.q_lora_rank", .u32(UInt32(rank)))) }
        metadata += [
            ("\(arch).attention.kv_lora_rank", .u32(UInt32(m.keyValueLoraRank))),
            ("\(arch).attention.key_length_mla", .u32(UInt32(m.queryKeyDimension))),
            ("\(arch).attention.value_length_mla", .u32(UInt32(m.valueDimension))),
            ("\(arch).expert_feed_forward_length", .u32(UInt32(d.moeIntermediateSize))),
            ("\(arch).expert_shared_count", .u32(UInt32((d.sharedExpertIntermediateSize ?? 0) / d.moeIntermediateSize))),
            ("\(arch).expert_weights_scale", .f32(d.router.routedScalingFactor)),
            ("\(arch).expert_weights_norm", .bool(d.router.normalizeTopK)),
            ("\(arch).rope.dimension_count", .u32(UInt32(m.ropeDimension))),
        ]
        if case .yarn(let y) = d.attention.ropeScaling {
            // What llama.cpp derives from the file (see the file comment) must be the checkpoint's.
            guard let all = y.mscaleAllDim, all != 0 else {
                throw refuse("YaRN without mscale_all_dim", "leaves the softmax scale alone, where llama.cpp multiplies it by mscale(factor)²")
            }
            guard abs(y.attentionFactor - 1) < 1e-9 else {
                throw refuse("YaRN with mscale ≠ mscale_all_dim", "gives a cos/sin factor of \(y.attentionFactor), where llama.cpp assumes 1")
            }
            guard y.truncate else { throw refuse("YaRN with truncate: false", "does not round the correction range, where llama.cpp does") }
            metadata += [
                ("\(arch).rope.scaling.type", .string("yarn")),
                ("\(arch).rope.scaling.factor", .f32(Float(y.factor))),
                ("\(arch).rope.scaling.original_context_length", .u32(UInt32(y.originalMaxPositions))),
                ("\(arch).rope.scaling.yarn_beta_fast", .f32(Float(y.betaFast))),
                ("\(arch).rope.scaling.yarn_beta_slow", .f32(Float(y.betaSlow))),
                // [TAG_DEEPSEEK2_YARN_LOG_MUL_FIX]: 0.1 · mscale_all_dim, as the converter writes it.
                ("\(arch).rope.scaling.yarn_log_multiplier", .f32(Float(0.1 * all))),
            ]
        }
        return metadata
    }
}

extension GGUFExport.TensorWriter {
    /// One layer's MLA tensors: projections Q8_0 (F32 where a width is not whole blocks),
    /// norms F32, and kv_b_proj split into attn_k_b (each head's W_UK transposed) and attn_v_b
    /// (each head's W_UV) as the converter splits it, in the checkpoint's dtype — Jindou keeps
    /// kv_b_proj unquantised in process too, so the file's numbers are the checkpoint's.
    mutating func latentAttention(layer l: Int) throws {
        let d = description, m = description.latentAttention!
        let p = d.layerPrefix(l) + "self_attn."
        if m.queryLoraRank != nil {
            try matrix(p + "q_a_proj.weight")
            try vector(p + "q_a_layernorm.weight")
            try matrix(p + "q_b_proj.weight")
        } else {
            try matrix(p + "q_proj.weight")
        }
        try matrix(p + "kv_a_proj_with_mqa.weight")
        try vector(p + "kv_a_layernorm.weight")
        let name = p + "kv_b_proj.weight", checkpoint = checkpoint
        let view = try Self.plain(name, checkpoint)
        let (heads, rank, nope, v) = (m.heads, m.keyValueLoraRank, m.nopeDimension, m.valueDimension)
        guard view.shape == [heads * (nope + v), rank] else {
            throw CheckpointError.shapeMismatch(path: view.path, tensor: name, expected: [heads * (nope + v), rank], actual: view.shape)
        }
        let source: GGMLType
        switch view.dtype {
        case .float32: source = .f32
        case .float16: source = .f16
        case .bfloat16: source = .bf16
        default:
            throw CheckpointError.unsupportedDType(path: view.path, tensor: name, dtype: view.dtype.rawValue, supported: "F32, F16, BF16")
        }
        append(.init(name: "blk.\(l).attn_k_b.weight", dimensions: [nope, rank, heads], role: .latentSplit, source: source) { type in
            { write in
                let keyValueB = try Self.plain(name, checkpoint).matrix()
                for h in 0..<heads {
                    let transposed = keyValueB.rows((h * (nope + v))..<(h * (nope + v) + nope)).transposedCopy(columns: 0..<rank)
                    try GGUFExport.encodeRows(transposed, type: type, write: write)
                }
            }
        })
        append(.init(name: "blk.\(l).attn_v_b.weight", dimensions: [rank, v, heads], role: .latentSplit, source: source) { type in
            { write in
                let keyValueB = try Self.plain(name, checkpoint).matrix()
                for h in 0..<heads {
                    try GGUFExport.encodeRows(keyValueB.rows((h * (nope + v) + nope)..<((h + 1) * (nope + v))), type: type, write: write)
                }
            }
        })
        try matrix(p + "o_proj.weight")
    }
}
