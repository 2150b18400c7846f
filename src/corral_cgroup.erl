%% @doc A child's cgroups, read and written from the VM: the statistics
%% keyed by cgroup v2 interface file names (v1 values translated to them),
%% and `cgget'/`cgset' of one interface file, by its v2 name also where its
%% controller is on v1.
%%
%% What a v2 file is called on v1, and how its value converts, is decided
%% once, in the table of c_src/common/cgroup_table.h, which the spawner
%% uses at spawn; this module asks the driver for it (port_control
%% OP_CGROUP_V1 on an idle port) and keeps the table in persistent_term.
%%
%% The spawner makes the leaves; the driver knows their directories from
%% the spawner's `Fds' frame (corral:cgroup_dirs/1). A child has a v2 leaf
%% where the host gives the spawner a v2 tree, and a v1 leaf in each v1
%% hierarchy that holds a controller of its `cgroup' options.
-module(corral_cgroup).

-export([stats/1, get/2, set/3, check_file/1]).
-export_type([dirs/0, stats/0]).

-include("corral_protocol.hrl").

%% `v2': the v2 leaf, or `undefined'; `v1': the v1 leaves.
-type dirs() :: #{v2 := binary() | undefined, v1 := [binary()]}.
%% Keyed by v2 file name: "memory.current", "memory.peak", "memory.events",
%% "cpu.stat", "pids.current", "pids.peak", "cpu.pressure",
%% "memory.pressure", "io.pressure" (each only where the child's groups
%% have it). Flat-keyed files are maps of integers, pressure files maps of
%% "some"/"full" to maps, single values integers (or `<<"max">>').
-type stats() :: #{binary() => term()}.

-define(V2_STATS, [
    <<"memory.current">>,
    <<"memory.peak">>,
    <<"memory.events">>,
    <<"cpu.stat">>,
    <<"pids.current">>,
    <<"pids.peak">>,
    <<"cpu.pressure">>,
    <<"memory.pressure">>,
    <<"io.pressure">>
]).

%% @doc The statistics of the child's groups; `#{}' without any.
-spec stats(dirs()) -> stats().
stats(#{v2 := V2, v1 := V1}) ->
    FromV2 =
        case V2 of
            undefined ->
                #{};
            _ ->
                maps:from_list([
                    {F, parse(F, Text)}
                 || F <- ?V2_STATS, {ok, Text} <- [file:read_file(filename:join(V2, F))]
                ])
        end,
    %% cpu.stat is on v2 wherever there is a v2 leaf; the v1 cpu hierarchy
    %% adds its throttling figures to it.
    Wanted = [F || F <- ?V2_STATS, F =:= <<"cpu.stat">> orelse not maps:is_key(F, FromV2)],
    FromV1 = v1_stats(V1, Wanted),
    maps:merge_with(
        fun
            (<<"cpu.stat">>, FromV1Stat, FromV2Stat) -> maps:merge(FromV1Stat, FromV2Stat);
            (_, _, FromV2Value) -> FromV2Value
        end,
        FromV1,
        FromV2
    ).

%% The wanted statistics from the v1 leaves (the first leaf that has one
%% wins), in v2 form: through the table where it has the file, else the v1
%% file of the same name (pids.current).
v1_stats([], _) ->
    #{};
v1_stats(V1, Wanted) ->
    Found = lists:foldl(
        fun(D, Acc) ->
            case [F || F <- Wanted, not maps:is_key(F, Acc)] of
                [] ->
                    Acc;
                Missing ->
                    Names = names(D),
                    lists:foldl(
                        fun(F, Acc1) ->
                            case v1_source(D, Names, F) of
                                none -> Acc1;
                                Source -> Acc1#{F => Source}
                            end
                        end,
                        Acc,
                        Missing
                    )
            end
        end,
        #{},
        V1
    ),
    Translated = [{F, Contents} || {F, {translate, Contents}} <- maps:to_list(Found)],
    Texts =
        case Translated of
            [] ->
                [];
            _ ->
                with_driver(fun(Port) ->
                    [
                        {F, T}
                     || {F, Contents} <- Translated,
                        {ok, T} <- [call(Port, [<<"G">>, F | Contents])]
                    ]
                end)
        end,
    maps:from_list(
        [{F, parse(F, T)} || {F, T} <- Texts] ++
            [{F, parse(F, T)} || {F, {text, T}} <- maps:to_list(Found)]
    ).

%% Where a statistic comes from in a v1 leaf that has the files Names.
v1_source(D, Names, F) ->
    Files =
        case maps:find(F, table()) of
            {ok, {_, Fs}} -> Fs;
            error -> []
        end,
    case lists:any(fun(V) -> maps:is_key(V, Names) end, Files) of
        true ->
            {translate, contents(D, Names, Files)};
        false ->
            case maps:is_key(F, Names) andalso file:read_file(filename:join(D, F)) of
                {ok, T} -> {text, T};
                _ -> none
            end
    end.

%% The names in a leaf, as a map's keys: one directory read, rather than a
%% look for each file (cgroupfs reads cost a trip to the file server).
names(D) ->
    case file:list_dir(D) of
        {ok, Names} -> maps:from_list([{unicode:characters_to_binary(N), true} || N <- Names]);
        _ -> #{}
    end.

parse(File, Text) ->
    case binary:match(File, <<"pressure">>) of
        nomatch ->
            case binary:match(Text, <<" ">>) of
                nomatch -> value(string:trim(Text));
                _ -> flat(Text)
            end;
        _ ->
            maps:from_list([
                {Kind, maps:from_list([pressure_field(F) || F <- Fields])}
             || Line <- lines(Text), [Kind | Fields] <- [string:lexemes(Line, " ")]
            ])
    end.

pressure_field(F) ->
    [K, V] = binary:split(F, <<"=">>),
    case binary:match(V, <<".">>) of
        nomatch -> {K, binary_to_integer(V)};
        _ -> {K, binary_to_float(V)}
    end.

%% "key value" lines.
flat(Text) ->
    maps:from_list([{K, value(V)} || Line <- lines(Text), [K, V] <- [string:lexemes(Line, " ")]]).

lines(Text) -> string:lexemes(Text, "\n").

value(V) ->
    try
        binary_to_integer(V)
    catch
        error:badarg -> V
    end.

%% @doc An interface file name: not empty, no '/', no "..".
-spec check_file(term()) -> {ok, binary()} | {error, {bad_cgroup_file, term()}}.
check_file(F) ->
    case catch unicode:characters_to_binary(F) of
        B when is_binary(B), B =/= <<>> ->
            case binary:match(B, [<<"/">>, <<"..">>, <<0>>]) of
                nomatch -> {ok, B};
                _ -> {error, {bad_cgroup_file, F}}
            end;
        _ ->
            {error, {bad_cgroup_file, F}}
    end.

%% @doc Reads one interface file of the child's groups: of the v2 leaf when
%% it has the file, else of the first v1 leaf that has it; else, a v2 file
%% whose controller is on v1, from its v1 files in v2 form (memory.max from
%% memory.limit_in_bytes, "max" for no limit). A v2 file v1 has no
%% equivalent of is `{no_v1_equivalent, File}'; one neither has
%% `{enoent, File}'.
-spec get(dirs(), term()) -> {ok, binary()} | {error, term()}.
get(Dirs, F) ->
    case locate(Dirs, F) of
        {native, Path} ->
            file:read_file(Path);
        {v1, B, _, Contents} ->
            with_driver(fun(Port) ->
                case call(Port, [<<"G">>, B | Contents]) of
                    {ok, V} -> {ok, V};
                    {error, Errno} -> {error, reason(Errno, B, get)}
                end
            end);
        Error ->
            Error
    end.

%% @doc Writes one interface file of the child's groups (found as get/2
%% does). A v2 file whose controller is on v1 is written to its v1 files,
%% its value converted (memory.max "64M" or "max" to memory.limit_in_bytes
%% 67108864 or -1). On v1, memory.swap.max is written as
%% memory.memsw.limit_in_bytes, the memory limit plus the swap, so it
%% needs a memory limit; a value that cannot be converted is
%% `{bad_cgroup_value, File, Value}'.
-spec set(dirs(), term(), iodata() | integer()) -> ok | {error, term()}.
set(Dirs, F, V) when is_integer(V) -> set(Dirs, F, integer_to_binary(V), V);
set(Dirs, F, V) -> set(Dirs, F, V, V).

%% Given: the value as the caller gave it, for the error.
set(Dirs, F, V, Given) ->
    case locate(Dirs, F) of
        {native, Path} ->
            file:write_file(Path, V, [raw]);
        {v1, B, D, Contents} ->
            case value_binary(V) of
                {ok, VB} ->
                    with_driver(fun(Port) ->
                        case call(Port, [<<"S">>, B, VB | Contents]) of
                            {ok, Writes} ->
                                write_all(D, binary:split(Writes, <<0>>, [global]));
                            {error, <<"einval">>} ->
                                {error, {bad_cgroup_value, B, Given}};
                            {error, Errno} ->
                                {error, reason(Errno, B, set)}
                        end
                    end);
                error ->
                    {error, {bad_cgroup_value, B, Given}}
            end;
        Error ->
            Error
    end.

%% The file's place: `{native, Path}' in a leaf that has it, `{v1, File,
%% Leaf, Contents}' for a v2 file the table translates, in the first v1 leaf
%% that has its files (with their contents), or the error.
locate(#{v2 := V2, v1 := V1}, F) ->
    case check_file(F) of
        {ok, B} ->
            Paths = [filename:join(D, B) || D <- [V2 || V2 =/= undefined] ++ V1],
            case [P || P <- Paths, filelib:is_regular(P)] of
                [Path | _] -> {native, Path};
                [] when V1 =:= [] -> {error, {enoent, B}};
                [] -> translated(B, V1)
            end;
        Error ->
            Error
    end.

translated(B, V1) ->
    case maps:find(B, table()) of
        {ok, {Controller, Files}} ->
            Prefix = <<Controller/binary, ".">>,
            Leaves = [{D, names(D)} || D <- V1],
            Has = fun(Names) -> lists:any(fun(V) -> maps:is_key(V, Names) end, Files) end,
            Ours = fun(Names) ->
                lists:any(
                    fun(N) -> binary:longest_common_prefix([N, Prefix]) =:= byte_size(Prefix) end,
                    maps:keys(Names)
                )
            end,
            case [{D, Names} || {D, Names} <- Leaves, Has(Names)] of
                [{D, Names} | _] ->
                    {v1, B, D, contents(D, Names, Files)};
                %% A v2 file with no v1 equivalent, where the controller
                %% is on v1 (a leaf of its hierarchy has its files).
                [] when Files =:= [] ->
                    case lists:any(fun({_, Names}) -> Ours(Names) end, Leaves) of
                        true -> {error, {no_v1_equivalent, B}};
                        false -> {error, {enoent, B}}
                    end;
                [] ->
                    {error, {enoent, B}}
            end;
        error ->
            {error, {enoent, B}}
    end.

value_binary(V) ->
    try iolist_to_binary(V) of
        B ->
            case binary:match(B, <<0>>) of
                nomatch -> {ok, B};
                _ -> error
            end
    catch
        error:badarg -> error
    end.

write_all(_, []) ->
    ok;
write_all(_, [<<>>]) ->
    ok;
write_all(D, [File, Value | Rest]) ->
    case file:write_file(filename:join(D, File), Value, [raw]) of
        ok -> write_all(D, Rest);
        Error -> Error
    end.

reason(<<"eopnotsupp">>, B, _) -> {no_v1_equivalent, B};
reason(<<"eacces">>, B, set) -> {read_only, B};
reason(Errno, B, _) -> {binary_to_atom(Errno), B}.

%% Each v1 file's content as the table's requests carry it: "+Content", or
%% "-" where the leaf (whose names are Names) has no such file.
contents(D, Names, Files) ->
    [
        case maps:is_key(V, Names) andalso file:read_file(filename:join(D, V)) of
            {ok, T} -> <<"+", T/binary>>;
            _ -> <<"-">>
        end
     || V <- Files
    ].

%% --- the table, from the driver (c_src/common/cgroup_table.h) -------------

%% V2 file => {V1 controller, [V1 file]}, fetched once per VM.
table() ->
    case persistent_term:get({?MODULE, table}, undefined) of
        undefined ->
            Text = with_driver(fun(Port) -> port_control(Port, ?OP_CGROUP_V1, <<"T">>) end),
            Table = maps:from_list([
                {V2, {Controller, Files}}
             || Line <- lines(Text), [V2, Controller | Files] <- [string:lexemes(Line, " ")]
            ]),
            persistent_term:put({?MODULE, table}, Table),
            Table;
        Table ->
            Table
    end.

%% A conversion: `{ok, Result}' or `{error, Errno}' (as a binary).
call(Port, Fields) ->
    case port_control(Port, ?OP_CGROUP_V1, lists:join(<<0>>, Fields)) of
        <<"+", Result/binary>> ->
            {ok, Result};
        <<"-", Error/binary>> ->
            [Errno | _] = binary:split(Error, <<0>>),
            {error, Errno}
    end.

%% The conversions need no child: an idle port of the driver answers them.
%% Unlinked, so that closing it sends a caller that traps exits (a
%% gen_server asking for stats) no 'EXIT' message.
with_driver(Fun) ->
    _ = corral:ensure_driver(),
    Port = open_port({spawn_driver, "corral_drv"}, [binary]),
    true = unlink(Port),
    try
        Fun(Port)
    after
        port_close(Port)
    end.
