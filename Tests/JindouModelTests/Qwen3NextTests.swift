import Foundation
import JindouModel
import JindouTestSupport
import Testing

/// Linear attention against transformers on `qwen3-next-tiny` (three Gated DeltaNet layers
/// around one gated full-attention layer) and `kimi-linear-tiny` (three Kimi Delta Attention
/// layers around MLA without rotary); TransformersGoldenTests runs every golden case. Here:
/// prefill split into chunks of any size, and sequences batched together, equal whole-prompt
/// prefill one at a time; the recurrent state's bytes are fixed per sequence; config errors
/// name the field.
@Suite("Linear attention with a per-sequence state (Qwen3-Next, Kimi-Linear)")
struct Qwen3NextTests {
    static let fixture = "qwen3-next-tiny"
    static let fixtures = ["qwen3-next-tiny", "kimi-linear-tiny", "ling-hybrid-tiny"]

    func load(_ fixture: String = fixture) async throws -> (Golden, SafetensorsFile, InferenceEngine) {
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        return (golden, tensors, try await EngineCache.shared.engine(fixture))
    }

    @Test("the config reads as linear layers 0, 1, 3 and a gated full-attention layer 2")
    func description() async throws {
        let d = try await load().2.description
        #expect(d.architecture == .qwen3Next)
        #expect(d.linearAttentionLayers == [true, true, false, true])
        #expect(d.attention.queryGate && d.zeroCentredNorms && d.attention.rotaryDimension == 4)
        #expect(d.moeNames.sharedExpertGate != nil && d.sharedExpertIntermediateSize == 32)
        #expect(d.hasRecurrentState)
    }

    /// Within 1e-3, the issue's bound for this family, as this fixture is sensitive to rounding
    /// at ~1e-4: its DeltaNet outputs are small next to their terms and the gated RMSNorm scales
    /// them back up. Measured on the 66-token prompt: transformers' own chunked prefill against
    /// its token-by-token recurrence 9.8e-5, its fp32 run against fp64 1.4e-4; Jindou's chunks
    /// of 1–5 against its whole prompt 1.5e-4, against transformers 1.9e-4 (whole: 4.1e-5).
    @Test("prefill in chunks of any size equals whole-prompt prefill and transformers",
          arguments: fixtures, [1, 2, 5, 16, 33, 64])
    func chunkedPrefill(fixture: String, chunk: Int) async throws {
        let (golden, tensors, engine) = try await load(fixture)
        let c = try #require(golden.cases.first { $0.promptIDs.count > 64 })
        let expected = try rows(tensors.tensor("case\(c.index).prefill_logits"))
        let whole = try await engine.promptLogits(c.promptIDs)
        let cache = engine.model.makeCache()
        var worst: Float = 0, worstWhole: Float = 0, position = 0, largest: Float = 0
        while position < c.promptIDs.count {
            let tokens = Array(c.promptIDs[position..<min(c.promptIDs.count, position + chunk)])
            let logits = try await engine.model.forward([SequenceStep(cache: cache, tokens: tokens, logits: .all)], experts: engine.experts)[0]
            let v = engine.description.vocabularySize
            for (i, _) in tokens.enumerated() {
                let row = Array(logits[(i * v)..<((i + 1) * v)])
                worst = max(worst, maxAbsDifference(row, expected[position + i]))
                worstWhole = max(worstWhole, maxAbsDifference(row, whole[position + i]))
                largest = max(largest, row.map(abs).max()!)
            }
            position += tokens.count
        }
        #expect(cache.length == c.promptIDs.count)
        #expect(worst <= 1e-3, "chunks of \(chunk): max |Δlogit| \(worst) vs transformers")
        #expect(worstWhole <= 1e-3, "chunks of \(chunk): max |Δlogit| \(worstWhole) vs whole-prompt prefill")
        #expect(largest > 1, "logits of a real scale")
    }

    @Test("sequences batched in one step equal each alone", arguments: fixtures)
    func batching(fixture: String) async throws {
        let (golden, tensors, engine) = try await load(fixture)
        let cases = Array(golden.cases.filter { $0.name.hasPrefix("default") }.prefix(4))
        #expect(cases.count == 4)
        let caches = cases.map { _ in engine.model.makeCache() }
        let steps = zip(cases, caches).map { SequenceStep(cache: $1, tokens: $0.promptIDs, logits: .all) }
        let together = try await engine.model.forward(steps, experts: engine.experts)
        let v = engine.description.vocabularySize
        for (c, logits) in zip(cases, together) {
            let expected = try rows(tensors.tensor("case\(c.index).prefill_logits"))
            let alone = try await engine.promptLogits(c.promptIDs)
            var worst: Float = 0, worstAlone: Float = 0
            for p in 0..<c.promptIDs.count {
                let row = Array(logits[(p * v)..<((p + 1) * v)])
                worst = max(worst, maxAbsDifference(row, expected[p]))
                worstAlone = max(worstAlone, maxAbsDifference(row, alone[p]))
            }
            // Batching changes only how rows are grouped into products (≤ 3.1e-5 measured); the
            // distance to transformers is held to the family's bound (ling-hybrid-tiny's 66-token
            // prompt, alone or batched: 1.2e-4 on an Intel Xeon with AVX-512 FP16, under 1e-4 on AMD EPYC).
            #expect(worstAlone <= 1e-4, "\(c.name) batched vs alone: \(worstAlone)")
            #expect(worst <= TransformersGoldenTests.linearAttentionTolerance, "\(c.name) batched vs transformers: \(worst)")
        }
        // Then one decode step for all four together, from each one's own state.
        let next = cases.map { $0.greedyNewTokens[0] }
        let decoded = try await engine.model.forward(zip(next, caches).map { SequenceStep(cache: $1, tokens: [$0]) }, experts: engine.experts)
        for (c, logits) in zip(cases, decoded) {
            let expected = try rows(tensors.tensor("case\(c.index).generated_logits"))[1]
            #expect(maxAbsDifference(logits, expected) <= 1e-3, "\(c.name) batched decode")
        }
    }

    @Test("speculative decoding rolls the state back to the last accepted token: greedy output unchanged", arguments: fixtures)
    func speculationRollsTheStateBack(fixture: String) async throws {
        let (golden, _, engine) = try await load(fixture)
        try await expectSpeculationKeepsGreedyOutput(engine, cases: golden.cases.filter { $0.name.hasPrefix("default") || $0.name.hasPrefix("k") },
                                                     fixture: fixture)
    }

    @Test("a sequence's state is fixed-size: only the full-attention layer grows with the context", arguments: fixtures)
    func stateBytes(fixture: String) async throws {
        let (golden, _, engine) = try await load(fixture)
        let d = engine.description
        let shape = try #require(d.linearAttention)
        // conv history (K − 1 rows of 2·32 + 64 channels) + S (4 value heads × 16 × 16), fp32,
        // for Qwen3-Next's 3 layers; Kimi-Linear and Ling: 3 · 64 channels and 4 heads × 16 × 16.
        let kda = fixture != "qwen3-next-tiny"
        #expect(shape.stateFloats == (kda ? 3 * 192 : 3 * 128) + 4 * 16 * 16)
        #expect(d.fixedStateBytes == 3 * shape.stateFloats * 4)
        // One layer's K and V (Qwen3-Next), or one latent row of 32 + 8 (Kimi-Linear's MLA).
        #expect(d.keyValueCacheBytesPerToken == (kda ? 40 * 4 : 2 * 2 * 16 * 4))
        #expect(d.keyValueCacheBytes(tokens: 1000, stepTokens: 1) - d.keyValueCacheBytes(tokens: 100, stepTokens: 1)
                == 900 * d.keyValueCacheBytesPerToken)
        let cache = engine.model.makeCache()
        let c = golden.cases[0]
        _ = try await engine.model.forward([SequenceStep(cache: cache, tokens: c.promptIDs)], experts: engine.experts)
        #expect(cache.stateBytes == d.fixedStateBytes)
        // A recurrent state cannot be shared as a prefix; truncating to 0 starts afresh.
        cache.truncate(to: 0)
        let again = try await engine.model.forward([SequenceStep(cache: cache, tokens: c.promptIDs)], experts: engine.experts)[0]
        let fresh = try await engine.promptLogits(c.promptIDs).last!
        #expect(maxAbsDifference(again, fresh) == 0)
    }

    @Test("config fields Qwen3-Next cannot honour are refused by name")
    func configErrors() throws {
        func refused(_ edit: (inout [String: Any]) -> Void) throws -> String { try configVerdict(fixture: Self.fixture, edit) }
        #expect(try refused { $0["layer_types"] = ["linear_attention", "sliding_attention", "full_attention", "linear_attention"] }
                    .contains("layer_types"))
        #expect(try refused { $0["layer_types"] = ["linear_attention", "full_attention"] }.contains("layer_types"))
        #expect(try refused { $0["linear_num_value_heads"] = 3 }.contains("linear_num_value_heads"))
        #expect(try refused { $0["hidden_act"] = "gelu" }.contains("hidden_act"))
        #expect(try refused { $0["use_sliding_window"] = true }.contains("use_sliding_window"))
        // full_attention_interval instead of layer_types, as older configs write it.
        #expect(try refused { $0["layer_types"] = nil; $0["full_attention_interval"] = 4 } == "accepted")
    }

    @Test("Kimi-Linear: its MLA has no rotary, KDA decays per channel; the Hub's config reads the same")
    func kimiLinearConfig() async throws {
        let engine = try await EngineCache.shared.engine("kimi-linear-tiny")
        let d = engine.description
        #expect(d.architecture == .kimiLinear && d.linearAttention?.kind == .kimiDelta && d.latentAttention?.rotary == false)
        #expect(d.linearAttentionLayers == [true, false, true, true] && d.moeNames.block == "block_sparse_moe.")
        // The Hub's remote-code config: linear_attn_config with 1-indexed layer lists, first_k_dense_replace.
        let path = Fixtures.path("kimi-linear-tiny") + "/config.json"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        for key in ["layer_types", "mlp_layer_types", "linear_head_dim", "linear_num_heads", "linear_conv_kernel_dim"] {
            config[key] = nil
        }
        config["linear_attn_config"] = ["head_dim": 16, "num_heads": 4, "short_conv_kernel_size": 4,
                                        "full_attn_layers": [2], "kda_layers": [1, 3, 4]]
        config["first_k_dense_replace"] = 1
        let hub = try ModelDescription(configJSON: try JSONSerialization.data(withJSONObject: config), path: path)
        #expect(hub == d)
        config["rope_parameters"] = ["rope_type": "default", "rope_theta": 10000.0]
        #expect(throws: CheckpointError.self) {
            try ModelDescription(configJSON: try JSONSerialization.data(withJSONObject: config), path: path)
        }
    }

    @Test("Ling: bounded forget gate, gated MLA with rotary, the Hub's names; clipping limits refused by name")
    func lingConfig() async throws {
        let d = try await EngineCache.shared.engine("ling-hybrid-tiny").description
        #expect(d.architecture == .bailingHybrid && d.linearAttention?.kind == .lingDelta)
        #expect(d.linearAttention?.forgetGateLowerBound == -5 && d.latentAttention?.headGate == true && d.latentAttention?.rotary == true)
        #expect(d.embeddingName == "model.word_embeddings.weight" && d.attentionModule == "attention.")
        let path = Fixtures.path("ling-hybrid-tiny") + "/config.json"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        config["expert_swiglu_limit_list"] = [0, 7, 7, 7]
        do {
            _ = try ModelDescription(configJSON: try JSONSerialization.data(withJSONObject: config), path: path)
            Issue.record("non-zero SwiGLU limits were accepted")
        } catch { #expect("\(error)".contains("expert_swiglu_limit_list")) }
    }
}
