fn main() -> std::process::ExitCode {
    matrix_ha_runtime::main(&patroni_bootstrap::SPEC, patroni_bootstrap::run)
}
