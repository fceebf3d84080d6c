import ArgumentParser
import JindouWire

/// `jindouctl`: the admin and user CLI for Jindou.
@main
struct Jindouctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jindouctl",
        abstract: "Drive Jindou: generate with a model or a cluster, make synthetic models, benchmark.",
        discussion: """
            Admin commands talk to a coordinator (--coordinator URL or $JINDOU_COORDINATOR; --token-file or
            $JINDOU_TOKEN_FILE when the cluster has a secret). generate runs in-process with --model DIR.
            Errors go to stderr with a non-zero exit status; --json prints one JSON object.
            """,
        version: JindouRelease.description,
        subcommands: [Status.self, Shards.self, Scale.self, Drain.self, Rebalance.self, Verify.self, Load.self,
                      Generate.self, Chat.self, Tokenize.self, Inspect.self, Synth.self, Quantize.self, Bench.self, Certs.self, Balance.self, Link.self, WireCaseCommand.self]
    )
}
