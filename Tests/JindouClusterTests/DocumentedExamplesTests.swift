import Foundation
import JindouTestSupport
import Testing

/// docs/api.md's "Examples" section, run as written against `jindoud local` on the bundled
/// model: every `sh` block (curl) and every `python` block (the official openai and
/// anthropic clients) must exit 0. The blocks name http://127.0.0.1:8080; the test's
/// cluster listens elsewhere, so that address is the one thing replaced.
@Suite("The API documentation's examples work as written", .serialized)
struct DocumentedExamplesTests {
    static let python = pythonImporting("openai, anthropic")
    static let curl = ["/usr/bin/curl", "/usr/local/bin/curl"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let required = ProcessInfo.processInfo.environment["JINDOU_REQUIRE_OPENAI"] == "1"

    /// The fenced blocks of one language in the section `## Examples`.
    static func blocks(_ language: String) throws -> [String] {
        let doc = try String(contentsOfFile: Fixtures.repositoryRoot + "/docs/api.md", encoding: .utf8)
        guard let start = doc.range(of: "\n## Examples\n") else { return [] }
        let section = doc[start.upperBound...].prefix { _ in true }
        let end = section.range(of: "\n## ")?.lowerBound ?? section.endIndex
        var result: [String] = [], rest = section[..<end]
        while let open = rest.range(of: "```\(language)\n") {
            guard let close = rest[open.upperBound...].range(of: "\n```") else { break }
            result.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return result
    }

    func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("Every curl and client example of docs/api.md runs against the bundled model")
    func examplesRun() async throws {
        let shell = try Self.blocks("sh"), python = try Self.blocks("python")
        #expect(shell.count >= 1 && python.count >= 2, "docs/api.md lost its examples")
        if Self.python == nil || Self.curl == nil {
            #expect(!Self.required, "JINDOU_REQUIRE_OPENAI=1 but curl or a Python with openai and anthropic is missing")
            return
        }
        let cluster = try LocalCluster(fixture: "qwen3-moe-tiny", extraArguments: ["--max-model-len", "1024"])
        defer { cluster.stop() }
        let address = "http://127.0.0.1:8080"
        for block in shell {
            let script = "set -e\n" + block.replacingOccurrences(of: address, with: cluster.url)
            let (status, output) = try run("/bin/sh", ["-c", script])
            #expect(status == 0, "sh example failed:\n\(block)\n---\n\(output)")
        }
        for block in python {
            let (status, output) = try run(Self.python!, ["-c", block.replacingOccurrences(of: address, with: cluster.url)])
            #expect(status == 0, "python example failed:\n\(output)")
        }
    }
}
