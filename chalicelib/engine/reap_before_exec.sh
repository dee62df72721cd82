# Sourced (BASH_ENV) by the bash scripts that launch the kernel's JVM (spark-submit, spark-class).
# spark-class reads the launcher's output through a process substitution and execs java without
# waiting for it: the finished subshell then stays a zombie child of the JVM for the JVM's life.
# Waiting for every child before exec leaves none behind.
exec() { wait; builtin exec "$@"; }
