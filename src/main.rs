use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = dcos_driver::cli::Cli::parse();
    dcos_driver::telemetry::init(cli.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(dcos_driver::cli::run(cli))?;
    std::process::exit(code)
}
