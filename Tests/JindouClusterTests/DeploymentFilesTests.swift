import Foundation
import JindouTestSupport
import Testing

/// The deployment files in cluster/ (systemd units, Containerfile, Kubernetes manifests, Helm
/// chart, Prometheus rules, Grafana dashboard) pass their checkers and name only metrics a real
/// `jindoud local` serves: tools/check_deploy.py, run here with the built binary. CI sets
/// JINDOU_REQUIRE_DEPLOY_CHECK=1, which makes a missing checker tool a failure, not a skip.
@Suite("Deployment files")
struct DeploymentFilesTests {
    static let required = ProcessInfo.processInfo.environment["JINDOU_REQUIRE_DEPLOY_CHECK"] == "1"

    /// A Python with PyYAML (JINDOU_PYTHON, or python3).
    static let python = pythonImporting("yaml")

    @Test(.enabled(if: python != nil || required, "needs a Python with PyYAML (set JINDOU_PYTHON)"))
    func everyDeploymentFilePassesItsChecker() throws {
        let python = try #require(Self.python, "JINDOU_REQUIRE_DEPLOY_CHECK=1 but no Python with PyYAML was found")
        let run = Process()
        run.executableURL = URL(fileURLWithPath: python)
        run.arguments = [Fixtures.repositoryRoot + "/tools/check_deploy.py", "--jindoud", try Executable("jindoud").url.path]
            + (Self.required ? ["--require-all"] : [])
        run.currentDirectoryURL = URL(fileURLWithPath: Fixtures.repositoryRoot)
        let out = Pipe()
        run.standardOutput = out
        run.standardError = out
        try run.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.waitUntilExit()
        #expect(run.terminationStatus == 0, "\(output)")
        #expect(output.contains("PASS"), "\(output)")
    }
}
