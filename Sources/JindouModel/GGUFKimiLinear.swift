import JindouRouting

// llama.cpp's `kimi-linear`: Kimi-Linear (transformers' KimiLinearForCausalLM) as
// convert_hf_to_gguf.py writes it (conversion/kimi_linear.py `KimiLinearModel`) and llama.cpp
// reads it (src/models/kimi-linear.cpp):
//   kimi-linear.{block_count, embedding_length, context_length, feed_forward_length (the
//                leading dense layers), attention.{head_count, head_count_kv (per layer: 0 for a
//                KDA layer, 1 for MLA — the latent cache as one KV head), kv_lora_rank,
//                q_lora_rank (optional), key_length_mla, value_length_mla,
//                layer_norm_rms_epsilon}, rope.dimension_count (MLA's rope width, though the
//                model rotates nothing), kda.head_dim, ssm.conv_kernel, and the routed keys of
//                GGUFRoutedFeedForward.swift (expert_gating_func 2 required)}
//   blk.N.{attn_norm, ffn_norm; KDA: attn_q / attn_k / attn_v, ssm_conv1d_{q,k,v}
//          ([K, 1, channels, 1]), ssm_beta, ssm_f_a + ssm_f_b, ssm_g_a + ssm_g_b, ssm_dt.bias,
//          ssm_a (−exp(A_log)), ssm_norm, attn_output; MLA: deepseek2's attn_q (or q-LoRA),
//          attn_kv_a_mqa, attn_kv_a_norm, attn_k_b + attn_v_b (or attn_kv_b), attn_output;
//          dense ffn_{gate,up,down}; MoE ffn_gate_inp, exp_probs_b.bias, ffn_*_exps, ffn_*_shexp}
// llama.cpp's KDA has as many heads as attention (head_count × kda.head_dim), its MLA no
// rotary, its router always renormalises the top-k (build_moe_ffn's norm_w) before
// expert_weights_scale. The MoE block's names are the shared GGUF ones, not Kimi's
// `block_sparse_moe` w1/w3/w2.
//
// llama.cpp's `bailingmoe3` (Ling-3.0, transformers' BailingHybridForCausalLM; the converter,
// conversion/bailingmoe3.py, is registered for the Hub's BailingMoeV3ForCausalLM; the graph
// src/models/bailingmoe3.cpp) is the same layout with Ling's differences: the full-rank gates
// f_proj / g_proj as ssm_f_a / ssm_g_a, the output `dense` as attn_output, ssm_a = exp(A_log),
// `kda.safe_gate` (required true) and `kda.gate_lower_bound`, MLA with interleaved rotary and
// the per-head sigmoid gate g_proj as attn_gate, expert_weights_norm as the file says, and
// `swiglu_clamp_exp` / `swiglu_clamp_shexp` limits (non-zero ones refused, as for the checkpoints).
// Jindou reads its KDA layers under `linear_attn.` so that their g_proj and the MLA gate map
// to different tensors.

extension GGUFTensorNames {
    static let kimiLinearLayerSuffixes: [String: String] = [
        "self_attn.q_conv1d.weight": "ssm_conv1d_q.weight",
        "self_attn.k_conv1d.weight": "ssm_conv1d_k.weight",
        "self_attn.v_conv1d.weight": "ssm_conv1d_v.weight",
        "self_attn.b_proj.weight": "ssm_beta.weight",
        "self_attn.f_a_proj.weight": "ssm_f_a.weight",
        "self_attn.f_b_proj.weight": "ssm_f_b.weight",
        "self_attn.g_a_proj.weight": "ssm_g_a.weight",
        "self_attn.g_b_proj.weight": "ssm_g_b.weight",
        "self_attn.dt_bias": "ssm_dt.bias",
        "self_attn.A_log": "ssm_a",
        "self_attn.o_norm.weight": "ssm_norm.weight",
    ]

    static let lingLayerSuffixes: [String: String] = [
        "linear_attn.q_proj.weight": "attn_q.weight",
        "linear_attn.k_proj.weight": "attn_k.weight",
        "linear_attn.v_proj.weight": "attn_v.weight",
        "linear_attn.q_conv1d.weight": "ssm_conv1d_q.weight",
        "linear_attn.k_conv1d.weight": "ssm_conv1d_k.weight",
        "linear_attn.v_conv1d.weight": "ssm_conv1d_v.weight",
        "linear_attn.b_proj.weight": "ssm_beta.weight",
        "linear_attn.f_proj.weight": "ssm_f_a.weight",
        "linear_attn.g_proj.weight": "ssm_g_a.weight",
        "linear_attn.dt_bias": "ssm_dt.bias",
        "linear_attn.A_log": "ssm_a",
        "linear_attn.o_norm.weight": "ssm_norm.weight",
        "linear_attn.dense.weight": "attn_output.weight",
        "self_attn.g_proj.weight": "attn_gate.weight",
    ]
}

extension GGUFModelMetadata {
    /// `kimi-linear`, or with `ling: true` `bailingmoe3`.
    func kimiLinear(ling: Bool = false) throws -> ModelDescription {
        let (layerCount, prediction) = try decoderLayers()
        let hidden = try positive(arch("embedding_length"))
        let heads = try positive(arch("attention.head_count"))
        // head_count_kv per layer: 0 marks the KDA layers (llama.cpp's is_recr).
        let kvKey = arch("attention.head_count_kv")
        guard let kvList = value(kvKey)?.array else { throw error(kvKey, "is missing or not a per-layer array (0 marks a KDA layer)") }
        let kvHeads = kvList.compactMap(\.integer)
        guard kvHeads.count == kvList.count, kvHeads.count >= layerCount else { throw error(kvKey, "is not an array of \(layerCount) integers") }
        let recurrent = kvHeads.prefix(layerCount).map { $0 == 0 }
        guard recurrent.contains(true), recurrent.contains(false) else {
            throw error(kvKey, "is \(kvHeads); Kimi-Linear mixes KDA layers (0) and MLA layers")
        }

        var linear = LinearAttentionShape(keyHeads: heads, valueHeads: heads, keyHeadDimension: try positive(arch("kda.head_dim")),
                                          valueHeadDimension: try positive(arch("kda.head_dim")),
                                          convolutionKernel: try positive(arch("ssm.conv_kernel")))
        linear.kind = ling ? .lingDelta : .kimiDelta
        linear.storedDecay = ling ? .exponential : .negatedExponential
        if ling {
            guard try bool(arch("kda.safe_gate"), default: true) else {
                throw error(arch("kda.safe_gate"), "is false; llama.cpp's bailingmoe3 computes only the safe (bounded) forget gate")
            }
            let bound = try number(arch("kda.gate_lower_bound"))
            guard bound < 0 else { throw error(arch("kda.gate_lower_bound"), "is \(bound); it must be negative") }
            linear.forgetGateLowerBound = Float(bound)
            for key in ["swiglu_clamp_exp", "swiglu_clamp_shexp"] {
                if let limits = value(arch(key))?.array, limits.contains(where: { ($0.double ?? 1) != 0 }) {
                    throw error(arch(key), "has non-zero SwiGLU clipping limits, which are not implemented")
                }
            }
            if value(arch("rope.dimension_sections")) != nil {
                throw error(arch("rope.dimension_sections"), "is present: the M-RoPE of Ling's vision-language model is not supported")
            }
        }

        let keyValueRank = try positive(arch("attention.kv_lora_rank"))
        let queryRank: Int? = value(arch("attention.q_lora_rank")) != nil ? try positive(arch("attention.q_lora_rank")) : nil
        let queryKey = try positive(arch("attention.key_length_mla"))
        let valueWidth = try positive(arch("attention.value_length_mla"))
        let rope = try positive(arch("rope.dimension_count"))
        guard rope < queryKey else {
            throw error(arch("rope.dimension_count"), "is \(rope); it must be less than attention.key_length_mla \(queryKey)")
        }
        let attentionLayers = (0..<layerCount).filter { !recurrent[$0] }
        let split = try sameInEveryLayer(["attn_k_b.weight", "attn_v_b.weight"], layers: attentionLayers)
        if !split, let layer = attentionLayers.first(where: { file.tensor("blk.\($0).attn_kv_b.weight") == nil }) {
            throw GGUFError(path: file.path, reason: "missing tensor 'blk.\(layer).attn_k_b.weight' (or the older 'attn_kv_b.weight') in MLA layer \(layer)")
        }

        let feedForward = try sigmoidRoutedFeedForward(layerCount: layerCount, family: ling ? "Ling" : "Kimi-Linear",
                                                       defaultGating: nil, defaultSharedExperts: nil)
        var router = feedForward.router
        if !ling { router.normalizeTopK = true }  // build_moe_ffn(…, norm_w = true, …) in kimi-linear.cpp
        var description = ModelDescription(
            architecture: ling ? .bailingHybrid : .kimiLinear,
            vocabularySize: try vocabularySize(),
            hiddenSize: hidden,
            attention: AttentionShape(
                heads: heads, keyValueHeads: heads, headDimension: queryKey, rotaryDimension: rope,
                ropeTheta: try number(arch("rope.freq_base"), default: 10_000), queryKeyNorm: false,
                queryKeyValueBias: false, outputBias: false, slidingWindow: nil, interleavedRotary: true),
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: feedForward.layers,
            router: router,
            hasCorrectionBias: feedForward.hasCorrectionBias,
            moeIntermediateSize: feedForward.moeIntermediateSize,
            sharedExpertIntermediateSize: feedForward.sharedExpertIntermediateSize,
            maxPositionEmbeddings: try positive(arch("context_length")),
            eosTokenIDs: try tokenIDs(["eos", "eot"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil)
        var latent = LatentAttentionShape(
            heads: heads, queryLoraRank: queryRank, keyValueLoraRank: keyValueRank, nopeDimension: queryKey - rope,
            ropeDimension: rope, valueDimension: valueWidth, bias: false, softmaxScale: 1 / Float(queryKey).squareRoot())
        latent.rotary = ling
        latent.headGate = ling
        latent.upProjections = split ? .split : .joint
        description.latentAttention = latent
        description.linearAttention = linear
        description.linearAttentionLayers = recurrent
        description.linearAttentionModule = ling ? "linear_attn." : "self_attn."
        description.ignoredPredictionLayers = prediction
        return try validated(description)
    }
}
