import Foundation
import JindouModel
import JindouTestSupport
import Testing

/// Qwen3-Next as llama.cpp's converter writes it (`qwen3next`; tools/fixture_gguf.py from
/// `qwen3-next-tiny-moe`, F32): in_proj_qkvz split into attn_qkv and attn_gate, in_proj_ba
/// kept grouped (ssm_ba), −exp(A_log) stored (ssm_a), the zero-centred norms stored as 1 + w.
/// Read with that meaning, the file gives transformers' goldens of the checkpoint it came from
/// and llama.cpp's own logits and greedy tokens on it (`.llama-cpp.json`, prompts of 7, 40
/// and 70 tokens — the last past llama.cpp's delta-net chunk of 64). Likewise Qwen3.5-MoE's
/// text model (`qwen35moe`, from `qwen35-moe-tiny`): ssm_beta/ssm_alpha, value heads tiled; and
/// Kimi-Linear (`kimi-linear`, from `kimi-linear-tiny`): KDA as ssm_*, MLA as deepseek2's; and
/// Ling-3.0 (`bailingmoe3`, from `ling-hybrid-tiny-group4`): Ling's gates, exp(A_log), the MLA gate.
@Suite("Linear-attention GGUF files equal transformers and llama.cpp")
struct GGUFQwen3NextTests {
    static let fixture = "qwen3-next-tiny-moe"
    static let file = Fixtures.path("gguf/qwen3-next-tiny-moe-f32.gguf")
    static let pairs = [("qwen3-next-tiny-moe", "gguf/qwen3-next-tiny-moe-f32.gguf"), ("qwen35-moe-tiny", "gguf/qwen35-moe-tiny-f32.gguf"),
                        ("kimi-linear-tiny", "gguf/kimi-linear-tiny-f32.gguf"),
                        ("ling-hybrid-tiny-group4", "gguf/ling-hybrid-tiny-group4-f32.gguf")]

    @Test func theFileDescribesTheCheckpointsModel() throws {
        let d = try GGUFCheckpoint(path: Self.file).description
        let hf = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(Self.fixture)))
        #expect(d.architecture == .qwen3Next && d.attention.queryGate && hf.zeroCentredNorms && !d.zeroCentredNorms)
        #expect(d.linearAttentionLayers == [true, true, false] && d.linearAttentionLayers == hf.linearAttentionLayers)
        var shape = try #require(d.linearAttention)
        #expect(shape.projections == .splitQKVZ && shape.storedDecay == .negatedExponential)
        (shape.projections, shape.storedDecay) = (.fused, .logarithm)
        #expect(shape == hf.linearAttention)
        #expect(d.attention == hf.attention && d.router == hf.router && d.layers == hf.layers)
        #expect(d.sharedExpertIntermediateSize == hf.sharedExpertIntermediateSize && d.moeIntermediateSize == hf.moeIntermediateSize)

        let qwen35 = try GGUFCheckpoint(path: Fixtures.path("gguf/qwen35-moe-tiny-f32.gguf")).description
        let hf35 = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("qwen35-moe-tiny")))
        #expect(qwen35.architecture == .qwen35Moe && qwen35.vision == nil && hf35.vision != nil)
        var shape35 = try #require(qwen35.linearAttention)
        #expect(shape35.projections == .split && shape35.storedDecay == .negatedExponential && shape35.tiledValueHeads)
        (shape35.storedDecay, shape35.tiledValueHeads) = (.logarithm, false)
        #expect(shape35 == hf35.linearAttention && qwen35.attention == hf35.attention && qwen35.router == hf35.router)
        #expect(qwen35.attention.mropeSection == [2, 1, 1] && qwen35.linearAttentionLayers == hf35.linearAttentionLayers)

        let kimi = try GGUFCheckpoint(path: Fixtures.path("gguf/kimi-linear-tiny-f32.gguf")).description
        let hfKimi = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("kimi-linear-tiny")))
        var kda = try #require(kimi.linearAttention)
        #expect(kda.kind == .kimiDelta && kda.storedDecay == .negatedExponential)
        kda.storedDecay = .logarithm
        #expect(kda == hfKimi.linearAttention && kimi.linearAttentionLayers == hfKimi.linearAttentionLayers)
        #expect(kimi.router == hfKimi.router && kimi.layers == hfKimi.layers && kimi.hasCorrectionBias)
        var latent = try #require(kimi.latentAttention)
        #expect(!latent.rotary && latent.upProjections == .split)
        latent.upProjections = .joint
        #expect(latent == hfKimi.latentAttention)

        let ling = try GGUFCheckpoint(path: Fixtures.path("gguf/ling-hybrid-tiny-group4-f32.gguf")).description
        let hfLing = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("ling-hybrid-tiny-group4")))
        var lingKDA = try #require(ling.linearAttention)
        #expect(lingKDA.kind == .lingDelta && lingKDA.storedDecay == .exponential && lingKDA.forgetGateLowerBound == -5)
        lingKDA.storedDecay = .logarithm
        #expect(lingKDA == hfLing.linearAttention && ling.linearAttentionLayers == [true, true, true, false])
        #expect(ling.router == hfLing.router && ling.layers == hfLing.layers && ling.attention == hfLing.attention)
        var lingLatent = try #require(ling.latentAttention)
        #expect(lingLatent.rotary && lingLatent.headGate && lingLatent.upProjections == .split)
        (lingLatent.upProjections, lingLatent.outputName) = (.joint, "dense")
        #expect(lingLatent == hfLing.latentAttention)
    }

    /// Every golden case (prompts of up to 66 tokens: past a chunk) through the file: the
    /// checkpoint's numbers within 1e-4 (the file's −exp(A_log) is torch's, the checkpoint's
    /// Swift's, and Qwen3.5's reordered value heads sum out_proj in another order; these
    /// fixtures amplify rounding ~100×: observed ≤ 3e-5), transformers' within the linear-attention
    /// bound (TransformersGoldenTests.linearAttentionTolerance), its greedy tokens.
    @Test(arguments: pairs)
    func logitsEqualTransformersAndTheCheckpoint(fixture: String, file: String) async throws {
        let engine = try InferenceEngine.load(directory: Fixtures.path(file))
        let checkpoint = try InferenceEngine.load(directory: Fixtures.path(fixture))
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        #expect(golden.cases.contains { $0.promptIDs.count > 64 })
        for c in golden.cases where !c.hasImages {
            let expected = try rows(tensors.tensor("case\(c.index).prefill_logits"))
            let actual = try await engine.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            let reference = try await checkpoint.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            #expect(actual.count == expected.count)
            for (position, (a, e)) in zip(actual, expected).enumerated() {
                #expect(maxAbsDifference(a, e) <= TransformersGoldenTests.linearAttentionTolerance,
                        "case \(c.name) position \(position): max |Δlogit| \(maxAbsDifference(a, e))")
                #expect(maxAbsDifference(a, reference[position]) <= 1e-4, "case \(c.name) position \(position)")
            }
            let result = try await engine.generate(GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens,
                                                                     expertsPerToken: c.experts, stopTokenIDs: []))
            #expect(result.tokenIDs == c.greedyNewTokens, "case \(c.name)")
        }
    }

    @Test(arguments: pairs.map(\.1))
    func logitsAndGreedyTokensEqualLlamaCpp(file: String) async throws {
        // llama.cpp runs the chunked delta rule in F32, Jindou the recurrence (observed ≤ 1e-5).
        try await LlamaCppGoldens.check(Fixtures.path(file), tolerance: 1e-4)
    }

    /// The Qwen3-Next file quantised by llama-quantize to Q8_0 (projections and experts Q8_0;
    /// conv, decay and norms F32): Jindou multiplies with the same 8-bit activation blocks as
    /// ggml, so it gives llama.cpp's logits (observed ≤ 4.8e-7) and greedy tokens.
    @Test func quantizedFileEqualsLlamaCpp() async throws {
        let file = Fixtures.path("gguf/qwen3-next-tiny-moe-q8_0.gguf")
        let census = try GGUFFile(path: file).tensors
        #expect(census.contains { $0.name == "blk.0.attn_qkv.weight" && $0.type == .q8_0 })
        #expect(census.contains { $0.name == "blk.0.ssm_ba.weight" && $0.type == .q8_0 })
        try await LlamaCppGoldens.check(file, tolerance: 1e-4)
    }

    /// Files from before the converter split in_proj_qkvz carry it whole (`ssm_in`, grouped per
    /// key head as the checkpoint's); llama.cpp still reads them, and so does Jindou: this file
    /// rebuilt that way gives the same logits.
    @Test func legacyFusedProjectionGivesTheSameLogits() async throws {
        let source = try GGUFFile(path: Self.file)
        let shape = try #require(try GGUFCheckpoint(path: Self.file).description.linearAttention)
        let (dk, r) = (shape.keyHeadDimension, shape.valueHeads / shape.keyHeads)
        let rowGroups: (Int) -> [(tensor: String, first: Int, count: Int)] = { g in
            [("attn_qkv", g * dk, dk), ("attn_qkv", shape.keyWidth + g * dk, dk),
             ("attn_qkv", 2 * shape.keyWidth + g * r * shape.valueHeadDimension, r * shape.valueHeadDimension),
             ("attn_gate", g * r * shape.valueHeadDimension, r * shape.valueHeadDimension)]
        }
        var fused: [GGUFWriter.Tensor] = []
        for info in source.tensors where info.name.hasSuffix(".attn_qkv.weight") {
            let layer = info.name.dropLast(".attn_qkv.weight".count)
            let hidden = info.dimensions[0]
            let rows = 2 * shape.keyWidth + 2 * shape.valueWidth
            fused.append(.init(name: layer + ".ssm_in.weight", dimensions: [hidden, rows], type: info.type) { write in
                for g in 0..<shape.keyHeads {
                    for part in rowGroups(g) {
                        let bytes = try source.bytes(of: try #require(source.tensor(layer + ".\(part.tensor).weight")))
                        try write(UnsafeRawBufferPointer(rebasing: bytes[(part.first * hidden * 4)..<((part.first + part.count) * hidden * 4)]))
                    }
                }
            })
        }
        #expect(fused.count == 2)
        let legacy = try GGUFLoadingTests.rewritten(from: Self.file, tensors: { !$0.name.hasSuffix(".attn_qkv.weight") && !$0.name.hasSuffix(".attn_gate.weight") || $0.name.hasPrefix("blk.2.") },
                                                    adding: fused)
        defer { try? FileManager.default.removeItem(atPath: legacy) }
        let legacyEngine = try InferenceEngine.load(directory: legacy)
        #expect(legacyEngine.description.linearAttention?.projections == .fused)
        let engine = try InferenceEngine.load(directory: Self.file)
        let prompt = Array(3..<73)
        #expect(try await legacyEngine.promptLogits(prompt) == (try await engine.promptLogits(prompt)))
    }

    @Test func badFilesAreNamed() throws {
        let loadError = GGUFLoadingTests().loadError
        let inner = loadError(try GGUFLoadingTests.rewritten(from: Self.file, metadata: GGUFLoadingTests.set("qwen3next.ssm.inner_size", .u32(48))))
        #expect(inner.contains("metadata 'qwen3next.ssm.inner_size' is 48; llama.cpp needs ssm.time_step_rank × ssm.state_size = 64"), "\(inner)")
        let heads = loadError(try GGUFLoadingTests.rewritten(from: Self.file, metadata: GGUFLoadingTests.set("qwen3next.ssm.time_step_rank", .u32(3))))
        #expect(heads.contains("metadata 'qwen3next.ssm.time_step_rank' 3 value heads are not a multiple of ssm.group_count 2 key heads"), "\(heads)")
        let all = loadError(try GGUFLoadingTests.rewritten(from: Self.file, metadata: GGUFLoadingTests.set("qwen3next.attention.recurrent_layers", .bools([true, true, true]))))
        #expect(all.contains("marks every layer recurrent"), "\(all)")
        let projection = loadError(try GGUFLoadingTests.rewritten(from: Self.file, tensors: { $0.name != "blk.1.attn_qkv.weight" }))
        #expect(projection.contains("missing tensor 'blk.1.attn_qkv.weight' (nor the legacy 'ssm_in.weight') in linear-attention layer 1"), "\(projection)")
        let router = loadError(try GGUFLoadingTests.rewritten(from: Self.file, tensors: { $0.name != "blk.2.ffn_gate_inp.weight" }))
        #expect(router.contains("missing tensor 'blk.2.ffn_gate_inp.weight' (qwen3next layers are all MoE)"), "\(router)")
        let state = loadError(try GGUFLoadingTests.rewritten(from: Self.file, tensors: { $0.name != "blk.0.ssm_a" }))
        #expect(state.contains("missing tensor 'blk.0.ssm_a'"), "\(state)")

        let kimi = Fixtures.path("gguf/kimi-linear-tiny-f32.gguf")
        let kinds = loadError(try GGUFLoadingTests.rewritten(from: kimi, metadata: GGUFLoadingTests.set("kimi-linear.attention.head_count_kv", .u32(1))))
        #expect(kinds.contains("metadata 'kimi-linear.attention.head_count_kv' is missing or not a per-layer array (0 marks a KDA layer)"), "\(kinds)")
        let ling = Fixtures.path("gguf/ling-hybrid-tiny-group4-f32.gguf")
        let unsafe = loadError(try GGUFLoadingTests.rewritten(from: ling, metadata: GGUFLoadingTests.set("bailingmoe3.kda.safe_gate", .bool(false))))
        #expect(unsafe.contains("metadata 'bailingmoe3.kda.safe_gate' is false"), "\(unsafe)")
        let clamp = loadError(try GGUFLoadingTests.rewritten(from: ling, metadata: GGUFLoadingTests.set("bailingmoe3.swiglu_clamp_exp", .i32s([0, 7, 7, 7]))))
        #expect(clamp.contains("metadata 'bailingmoe3.swiglu_clamp_exp' has non-zero SwiGLU clipping limits"), "\(clamp)")
    }
}
