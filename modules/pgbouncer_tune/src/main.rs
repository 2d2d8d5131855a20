fn main() -> std::process::ExitCode {
    matrix_ha_runtime::main(&pgbouncer_tune::SPEC, pgbouncer_tune::run)
}
