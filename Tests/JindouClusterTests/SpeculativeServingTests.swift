import Foundation
import JindouAdmin
import JindouModel
import JindouTestSupport
import Testing

/// `--speculative ngram` on a real cluster: the drafts of every running request are
/// verified in the batch's one step (one dispatch per worker per MoE layer for all of them),
/// the output is the single-process engine's without speculation, a request can opt out, and
/// /metrics counts what was drafted and accepted.
@Suite("Speculative decoding through a cluster", .serialized)
struct SpeculativeServingTests {
    static let prompts = [[5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7], [11, 12, 11, 12, 11, 12], [40, 41, 42, 43, 40, 41, 42, 43, 40, 41]]

    @Test(arguments: [1, 3])
    func clusterOutputIsUnchanged(workers: Int) async throws {
        let fixture = "qwen3-moe-tiny"
        let engine = try await EngineCache.shared.engine(fixture)
        let cluster = try LocalCluster(fixture: fixture, workers: workers, extraArguments: ["--speculative", "ngram", "--draft-tokens", "4"])
        defer { cluster.stop() }
        let client = try cluster.client
        // Concurrently, so drafts of several sequences share steps.
        let reports = try await withThrowingTaskGroup(of: (Int, GenerationReport).self) { group in
            for (i, prompt) in Self.prompts.enumerated() {
                group.addTask {
                    (i, try await client.post("v1/jindou/generate",
                                              GenerationRequestBody(promptIDs: prompt, maxNewTokens: 24, ignoreEOS: true),
                                              as: GenerationReport.self))
                }
            }
            var all: [Int: GenerationReport] = [:]
            for try await (i, report) in group { all[i] = report }
            return all
        }
        var accepted = 0
        for (i, prompt) in Self.prompts.enumerated() {
            let expected = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 24, stopTokenIDs: []))
            let report = try #require(reports[i])
            #expect(report.tokenIDs == expected.tokenIDs, "prompt \(i)")
            let statistics = try #require(report.speculation)
            #expect(statistics.tokens == 23 && statistics.accepted <= statistics.drafted)
            accepted += statistics.accepted
        }
        #expect(accepted > 0)

        // Opting out: the same tokens, no speculation reported.
        let out = try await client.post("v1/jindou/generate",
                                        GenerationRequestBody(promptIDs: Self.prompts[0], maxNewTokens: 24, ignoreEOS: true, speculative: false),
                                        as: GenerationReport.self)
        #expect(out.speculation == nil && out.tokenIDs == reports[0]?.tokenIDs)

        let metrics = String(decoding: try await client.send("GET", "metrics", body: nil), as: UTF8.self)
        let line = metrics.split(separator: "\n").first { $0.hasPrefix("jindou_speculative_accepted_tokens_total") }
        let value = line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
        #expect(value >= Double(accepted), "\(line ?? "no jindou_speculative_accepted_tokens_total")")
    }

    /// `--speculative mtp`: the MTP layer is mapped on the coordinator (workers hold only
    /// the decoder layers' experts) and its drafts of every running request are verified in
    /// the batch's step; output is the single-process engine's without speculation.
    @Test(arguments: [1, 3])
    func mtpThroughAClusterKeepsTheOutput(workers: Int) async throws {
        let fixture = "deepseek-v3-tiny-noq"
        let engine = try await EngineCache.shared.engine(fixture)
        let cluster = try LocalCluster(fixture: fixture, workers: workers, extraArguments: ["--speculative", "mtp", "--draft-tokens", "2"])
        defer { cluster.stop() }
        let client = try cluster.client
        let prompts = [[41, 81, 6, 102, 287, 199, 315, 107, 157], [5, 6, 7, 5, 6, 7], [11]]
        let reports = try await withThrowingTaskGroup(of: (Int, GenerationReport).self) { group in
            for (i, prompt) in prompts.enumerated() {
                group.addTask {
                    (i, try await client.post("v1/jindou/generate", GenerationRequestBody(promptIDs: prompt, maxNewTokens: 16, ignoreEOS: true),
                                              as: GenerationReport.self))
                }
            }
            var all: [Int: GenerationReport] = [:]
            for try await (i, report) in group { all[i] = report }
            return all
        }
        for (i, prompt) in prompts.enumerated() {
            let expected = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 16, stopTokenIDs: []))
            let report = try #require(reports[i])
            #expect(report.tokenIDs == expected.tokenIDs, "prompt \(i)")
            let statistics = try #require(report.speculation)
            #expect(statistics.tokens == 15 && statistics.drafted > 0)
        }
    }
}
