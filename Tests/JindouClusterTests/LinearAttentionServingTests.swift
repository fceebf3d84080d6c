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
    @Test func speculationIsRefusedByName() throws {
        let run = try Executable("jindoud").run(["local", "--model", Fixtures.path("qwen3-next-tiny"), "--workers", "1",
                                                  "--listen", "127.0.0.1:0", "--speculative", "ngram"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("--speculative ngram"), "\(run.stderr)")
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
        // Prefix caching stays off for it (a state cannot be cut to a prefix): a repeat is computed again, equally.
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
