import Foundation
import JindouAdmin
import JindouModel
import JindouTestSupport
import Testing

/// Qwen3-Next, Kimi-Linear and Ling through a 2-worker `jindoud local` with every golden prompt sent at once and
/// steps of at most 8 tokens: prompts are prefilled in chunks while others decode in the same
/// steps, each sequence from its own recurrent state, and every request gets transformers'
/// greedy tokens.
@Suite("Linear attention through a cluster", .serialized)
struct LinearAttentionServingTests {
    /// n-gram speculation through the batch scheduler: rejected drafts roll the recurrent state
    /// back to the kept state of the last accepted token; outputs equal plain greedy decoding.
    @Test(arguments: ["qwen3-next-tiny", "kimi-linear-tiny"])
    func speculativeDecodingEqualsGreedy(fixture: String) async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let cluster = try LocalCluster(fixture: fixture, workers: 2, extraArguments: ["--speculative", "ngram", "--draft-tokens", "3"])
        defer { cluster.stop() }
        let client = try cluster.client
        var drafted = 0, rejected = 0
        for prompt in [[5, 6, 7, 8, 9, 5, 6, 7], [11, 12, 11, 12, 11, 12], [40, 41, 42, 43, 40, 41]] {
            let report = try await client.post("v1/jindou/generate", GenerationRequestBody(promptIDs: prompt, maxNewTokens: 24, ignoreEOS: true),
                                               as: GenerationReport.self)
            let plain = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 24, stopTokenIDs: []))
            #expect(report.tokenIDs == plain.tokenIDs, "\(fixture) \(prompt)")
            drafted += report.speculation?.drafted ?? 0
            rejected += (report.speculation?.drafted ?? 0) - (report.speculation?.accepted ?? 0)
        }
        #expect(drafted > 0 && rejected > 0, "drafted \(drafted), rejected \(rejected): the rollback was not exercised")
        // These checkpoints carry no MTP layer (transformers' save_pretrained drops it; Kimi-Linear has none): refused by name.
        let mtp = try Executable("jindoud").run(["local", "--model", Fixtures.path(fixture), "--workers", "1",
                                                  "--listen", "127.0.0.1:0", "--speculative", "mtp"])
        #expect(mtp.status != 0 && mtp.stderr.contains("mtp"), "\(mtp.stderr)")
    }

    /// Qwen3-Next's own MTP layer (`mtp.*`, mapped on the coordinator) drafting through the batch
    /// scheduler of a 2-worker cluster: greedy output unchanged, drafts accepted and rejected.
    @Test func mtpSpeculationThroughAClusterEqualsGreedy() async throws {
        let fixture = "qwen3-next-tiny-moe"
        let engine = try await EngineCache.shared.engine(fixture)
        let cluster = try LocalCluster(fixture: fixture, workers: 2, extraArguments: ["--speculative", "mtp", "--draft-tokens", "2"])
        defer { cluster.stop() }
        let client = try cluster.client
        var drafted = 0, accepted = 0
        for prompt in [[5, 6, 7, 8, 9, 5, 6, 7], Array(3..<70)] {
            let report = try await client.post("v1/jindou/generate", GenerationRequestBody(promptIDs: prompt, maxNewTokens: 16, ignoreEOS: true),
                                               as: GenerationReport.self)
            let plain = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 16, stopTokenIDs: []))
            #expect(report.tokenIDs == plain.tokenIDs, "\(prompt)")
            drafted += report.speculation?.drafted ?? 0
            accepted += report.speculation?.accepted ?? 0
        }
        #expect(drafted > 0 && accepted < drafted, "drafted \(drafted), accepted \(accepted)")
    }

    @Test(arguments: ["qwen3-next-tiny", "kimi-linear-tiny", "ling-hybrid-tiny"])
    func batchedChunkedRequestsGiveTransformersTokens(fixture: String) async throws {
        let (golden, _) = try GoldenSet(fixture: fixture, stem: "golden").load()
        let cluster = try LocalCluster(fixture: fixture, workers: 2, extraArguments: ["--max-batch-tokens", "8"])
        defer { cluster.stop() }
        let client = try cluster.client
        let reports = try await withThrowingTaskGroup(of: (Int, GenerationReport).self) { group in
            for c in golden.cases {
                group.addTask {
                    var body = GenerationRequestBody(promptIDs: c.promptIDs, maxNewTokens: c.maxNewTokens, ignoreEOS: true)
                    body.expertsPerToken = c.experts
                    return (c.index, try await client.post("v1/jindou/generate", body, as: GenerationReport.self))
                }
            }
            var all: [Int: GenerationReport] = [:]
            for try await (i, report) in group { all[i] = report }
            return all
        }
        for c in golden.cases {
            #expect(reports[c.index]?.tokenIDs == c.greedyNewTokens, "\(c.name)")
        }
        // A repeated prompt cannot reuse its own longer kept sequence (a state is never cut back): computed again, equally.
        let again = try await client.post("v1/jindou/generate",
                                          GenerationRequestBody(promptIDs: golden.cases[0].promptIDs, maxNewTokens: golden.cases[0].maxNewTokens,
                                                                ignoreEOS: true), as: GenerationReport.self)
        #expect(again.tokenIDs == golden.cases[0].greedyNewTokens)

        // Memory per sequence as the budget counts it, fixed and per token, in the status and /metrics.
        let engine = try await EngineCache.shared.engine(fixture)
        let status = try await client.get("v1/admin/status", as: ClusterStatus.self)
        #expect(status.sequenceFixedBytes == engine.description.fixedStateBytes && engine.description.fixedStateBytes > 0)
        #expect(status.kvBytesPerToken == engine.description.keyValueCacheBytesPerToken)
        let metrics = String(decoding: try await client.send("GET", "metrics", body: nil), as: UTF8.self)
        func gauge(_ name: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        #expect(gauge("jindou_sequence_fixed_state_bytes") == Double(engine.description.fixedStateBytes))
        #expect(gauge("jindou_kv_cache_bytes_per_token") == Double(engine.description.keyValueCacheBytesPerToken))
        #expect(gauge("jindou_sequence_state_bytes") != nil)
    }
}
