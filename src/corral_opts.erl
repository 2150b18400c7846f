%% @doc The one place where Corral's options are validated and normalized.
%%
%% Every entry point (`corral:open/3', `corral:cmd/3', the Elixir API) passes
%% its command, arguments and options through `normalize/4'. Errors name the
%% option and the value, before any system call is made:
%% `{bad_option, Name, Value}', `{unknown_option, Name}', or `enoent' for an
%% executable that cannot be found.
-module(corral_opts).

-export([normalize/4, normalize/5, signal_number/1, spawn_keys/0, cmd_keys/0]).

-export_type([option/0, normalized/0]).

-type option() :: {atom(), term()}.
-type normalized() :: #{
    request := map(),
    window := pos_integer(),
    atom() => term()
}.

-define(DEFAULT_WINDOW, 1048576).
-define(DEFAULT_KILL_TIMEOUT, 5000).
%% The child's pipes are enlarged to this (F_SETPIPE_SZ) so that one read or
%% write, and one message, carries up to a quarter MiB; 0 keeps the kernel's.
-define(DEFAULT_PIPE_SIZE, 262144).

%% Options that shape the child itself (accepted by open/3 and cmd/3).
-spec spawn_keys() -> [atom()].
spawn_keys() ->
    [
        cd,
        env,
        clear_env,
        arg0,
        stdin,
        stdout,
        stderr,
        stderr_to_stdout,
        kill_timeout,
        delay_to_sigkill,
        stop_signal,
        window,
        stdio_window,
        pipe_size
    ].

%% Options that only cmd/3 takes. (`into' is Elixir's: Corral.cmd/3 turns
%% it into `fold' before calling corral:cmd/3.)
-spec cmd_keys() -> [atom()].
cmd_keys() ->
    [timeout, input, max_output_size, capture_stderr_only, parallelism, fold].

%% @doc Validates `Opts' for an entry point that accepts `Allowed' keys and
%% returns the request for the spawner plus the remaining settings.
-spec normalize(iodata() | atom(), [iodata() | atom()], [option()] | map(), [atom()]) ->
    {ok, normalized()} | {error, term()}.
normalize(Cmd, Args, Opts, Allowed) ->
    normalize(Cmd, Args, Opts, Allowed, #{}).

%% @doc Like {@link normalize/4}, with defaults of the entry point's own
%% (`#{stderr => inherit}' for cmd/3, as System.cmd/3 leaves stderr alone).
-spec normalize(iodata() | atom(), [iodata() | atom()], [option()] | map(), [atom()], map()) ->
    {ok, normalized()} | {error, term()}.
normalize(Cmd, Args, Opts, Allowed, Defaults) ->
    try
        {ok, do_normalize(Cmd, Args, to_list(Opts), Allowed, Defaults)}
    catch
        throw:{corral_opts, Reason} -> {error, Reason}
    end.

to_list(Opts) when is_map(Opts) -> maps:to_list(Opts);
to_list(Opts) when is_list(Opts) -> Opts;
to_list(Opts) -> bad(options, Opts).

bad(Name, Value) -> throw({corral_opts, {bad_option, Name, Value}}).

do_normalize(Cmd, Args, Opts, Allowed, Defaults) ->
    lists:foreach(
        fun
            ({K, _}) when is_atom(K) ->
                lists:member(K, Allowed) orelse throw({corral_opts, {unknown_option, K}});
            (Other) ->
                bad(options, Other)
        end,
        Opts
    ),
    Get = fun(K, Default) -> proplists:get_value(K, Opts, Default) end,
    Path = executable(Cmd),
    ArgBins = args(Args),
    Arg0 =
        case Get(arg0, undefined) of
            undefined -> Path;
            A0 -> text(arg0, A0)
        end,
    CaptureStderrOnly = bool(capture_stderr_only, Get(capture_stderr_only, false)),
    %% As with System.cmd/3: the port's `parallelism' flag; the VM's default
    %% (+spp) when not given.
    PortOpts =
        case Get(parallelism, undefined) of
            undefined -> [];
            P -> [{parallelism, bool(parallelism, P)}]
        end,
    Stderr =
        case {bool(stderr_to_stdout, Get(stderr_to_stdout, false)), CaptureStderrOnly} of
            {true, _} -> stdout;
            {false, true} -> pipe;
            {false, false} -> stderr_mode(Get(stderr, maps:get(stderr, Defaults, pipe)))
        end,
    Stdout =
        case CaptureStderrOnly of
            true -> null;
            false -> stdout_mode(Get(stdout, pipe))
        end,
    Window = pos_int(window, Get(window, Get(stdio_window, ?DEFAULT_WINDOW))),
    KillTimeout = non_neg_int(
        kill_timeout, Get(kill_timeout, Get(delay_to_sigkill, ?DEFAULT_KILL_TIMEOUT))
    ),
    Request0 = #{
        path => Path,
        argv => [Arg0 | ArgBins],
        env => environment(Get(env, []), bool(clear_env, Get(clear_env, false))),
        stdin => stdin_mode(Get(stdin, pipe)),
        stdout => Stdout,
        stderr => Stderr,
        kill_timeout => KillTimeout,
        stop_signal => signal(stop_signal, Get(stop_signal, sigterm)),
        pipe_size => non_neg_int(pipe_size, Get(pipe_size, ?DEFAULT_PIPE_SIZE))
    },
    %% Without `cd' the child starts in the VM's current directory, as with
    %% System.cmd/3, and a relative `cd' is taken from there: the driver
    %% sends the VM's directory with the request (see corral_drv.cpp).
    Request =
        case Get(cd, undefined) of
            undefined -> Request0;
            Dir -> Request0#{cd => cd(Dir)}
        end,
    #{
        request => Request,
        window => Window,
        port_opts => PortOpts,
        timeout => timeout_value(Get(timeout, infinity)),
        input => input(Get(input, undefined)),
        max_output_size => max_output(Get(max_output_size, infinity)),
        capture_stderr_only => CaptureStderrOnly,
        fold => fold(Get(fold, undefined))
    }.

%% Resolves the executable like System.cmd/3: an absolute path is taken as
%% it is, anything else is looked up with os:find_executable/1.
executable(Cmd) ->
    Name = text(command, Cmd),
    Name =/= <<>> orelse bad(command, Cmd),
    case filename:pathtype(Name) of
        absolute ->
            Name;
        _ ->
            case os:find_executable(binary_to_list(Name)) of
                false -> throw({corral_opts, enoent});
                Found -> unicode:characters_to_binary(absolute(Found))
            end
    end.

%% filename:absname/1 asks for the current directory (a dirty I/O call)
%% even for a path that is absolute already, as PATH's entries nearly
%% always are.
absolute(Path) ->
    case filename:pathtype(Path) of
        absolute -> Path;
        _ -> filename:absname(Path)
    end.

args(Args) when is_list(Args) ->
    [text(args, A) || A <- Args];
args(Args) ->
    bad(args, Args).

%% Text without NUL bytes, from a binary, a string (chardata) or an atom.
text(Name, V) when is_atom(V), V =/= undefined, V =/= nil, V =/= true, V =/= false ->
    text(Name, atom_to_binary(V, utf8));
text(Name, V) when is_binary(V); is_list(V) ->
    case catch unicode:characters_to_binary(V) of
        B when is_binary(B) ->
            case binary:match(B, <<0>>) of
                nomatch -> B;
                _ -> bad(Name, V)
            end;
        _ ->
            bad(Name, V)
    end;
text(Name, V) ->
    bad(Name, V).

cd(Dir) ->
    case text(cd, Dir) of
        <<>> -> bad(cd, Dir);
        B -> B
    end.

%% The complete environment of the child, built here from the VM's current
%% one (os:env/0, so os:putenv/2 and System.put_env/2 are honoured).
environment([], false) ->
    [unicode:characters_to_binary([K, $=, V]) || {K, V} <- os:env()];
environment(Env, Clear) when is_list(Env) ->
    Base =
        case Clear of
            true ->
                #{};
            false ->
                maps:from_list([
                    {unicode:characters_to_binary(K), unicode:characters_to_binary(V)}
                 || {K, V} <- os:env()
                ])
        end,
    Final = lists:foldl(fun env_entry/2, Base, Env),
    [<<K/binary, $=, V/binary>> || {K, V} <- maps:to_list(Final)];
environment(Env, _) ->
    bad(env, Env).

%% Errors name the whole {Key, Value} entry.
env_entry({K, V} = E, Acc) ->
    try
        Key = text(env, K),
        (Key =/= <<>> andalso binary:match(Key, <<"=">>) =:= nomatch) orelse bad(env, E),
        case V of
            nil -> maps:remove(Key, Acc);
            false -> maps:remove(Key, Acc);
            _ -> Acc#{Key => text(env, V)}
        end
    catch
        throw:{corral_opts, {bad_option, env, _}} -> bad(env, E)
    end;
env_entry(E, _) ->
    bad(env, E).

bool(_, B) when is_boolean(B) -> B;
bool(Name, V) -> bad(Name, V).

pos_int(_, N) when is_integer(N), N > 0 -> N;
pos_int(Name, V) -> bad(Name, V).

non_neg_int(_, N) when is_integer(N), N >= 0 -> N;
non_neg_int(Name, V) -> bad(Name, V).

stderr_mode(M) when M =:= pipe; M =:= consume -> pipe;
stderr_mode(M) when M =:= stdout; M =:= redirect -> stdout;
stderr_mode(M) when M =:= null; M =:= discard -> null;
stderr_mode(inherit) -> inherit;
stderr_mode(M) -> bad(stderr, M).

stdout_mode(pipe) -> pipe;
stdout_mode(M) when M =:= null; M =:= discard -> null;
stdout_mode(M) -> bad(stdout, M).

stdin_mode(pipe) -> pipe;
stdin_mode(null) -> null;
stdin_mode(M) -> bad(stdin, M).

timeout_value(infinity) -> infinity;
timeout_value(nil) -> infinity;
timeout_value(T) -> pos_int(timeout, T).

max_output(infinity) -> infinity;
max_output(nil) -> infinity;
max_output(N) -> pos_int(max_output_size, N).

input(undefined) -> undefined;
input(nil) -> undefined;
input(F) when is_function(F, 1) -> F;
input(B) when is_binary(B) -> B;
input(L) when is_list(L) ->
    try iolist_size(L) of
        _ -> L
    catch
        error:badarg -> bad(input, L)
    end;
input(V) ->
    bad(input, V).

fold(undefined) -> undefined;
fold({F, _Acc} = Fold) when is_function(F, 2) -> Fold;
fold(V) -> bad(fold, V).

signal(Name, V) ->
    case signal_number(V) of
        {ok, N} -> N;
        error -> bad(Name, V)
    end.

%% @doc Maps a signal name (`sigterm' or `term') or number to its number.
-spec signal_number(atom() | integer()) -> {ok, 1..64} | error.
signal_number(N) when is_integer(N), N >= 1, N =< 64 -> {ok, N};
signal_number(Name) when is_atom(Name) ->
    Table = #{
        sighup => 1,
        sigint => 2,
        sigquit => 3,
        sigill => 4,
        sigabrt => 6,
        sigkill => 9,
        sigusr1 => 10,
        sigsegv => 11,
        sigusr2 => 12,
        sigpipe => 13,
        sigalrm => 14,
        sigterm => 15,
        sigchld => 17,
        sigcont => 18,
        sigstop => 19,
        sigtstp => 20,
        sigttin => 21,
        sigttou => 22,
        sigwinch => 28
    },
    Long =
        case atom_to_list(Name) of
            "sig" ++ _ -> Name;
            Short -> catch list_to_existing_atom("sig" ++ Short)
        end,
    case Table of
        #{Long := N} -> {ok, N};
        _ -> error
    end;
signal_number(_) ->
    error.
