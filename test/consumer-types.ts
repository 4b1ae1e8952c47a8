import { relative } from 'node:path';
import ts from 'typescript';

/** Names of the types a caller builds to call something. */
const OPTIONS_NAME = /(Options|Filter|Request|Limits|Policy)$/;

/**
 * Every optional property a caller of the package writes, that does not accept `undefined`: under
 * `exactOptionalPropertyTypes`, `{ apiKey: process.env.KEY }` fails to compile against
 * `apiKey?: string` and compiles against `apiKey?: string | undefined`.
 *
 * What a caller writes: the option parameters (inline object types, or types named `*Options`,
 * `*Filter`, `*Request`, `*Limits`, `*Policy`) of exported functions, of exported classes'
 * constructors and methods, of the methods of what those return (`createOrchestrator()`'s
 * `listRuns(filter)`), and exported `*Options` types; into nested objects (`limits.retry`, a
 * `ChatModel` written as an object), not into callbacks, class instances or other packages' types.
 * Not the data a caller passes back (a `RunEvent` to `sseFrame`), nor the parameters of interfaces
 * that callers implement: those are what the caller receives.
 */
export function optionalsWithoutUndefined(
  program: ts.Program,
  typesEntries: readonly string[],
  typesDir: string,
): string[] {
  if (!program.getCompilerOptions().exactOptionalPropertyTypes) {
    throw new Error('the program must have exactOptionalPropertyTypes on');
  }
  const checker = program.getTypeChecker();
  const undefinedType = checker.getUndefinedType();
  const found = new Set<string>();
  const seen = new Set<ts.Type>();
  const seenReturned = new Set<ts.Type>();

  const declaredHere = (symbol: ts.Symbol | undefined): boolean =>
    symbol?.declarations?.some((declaration) => declaration.getSourceFile().fileName.startsWith(typesDir)) ??
    false;
  // Ours: declared in the package, or mapped from a type of the package (`Partial<RetryPolicy>`).
  const ours = (type: ts.Type): boolean =>
    declaredHere(type.aliasSymbol ?? type.getSymbol()) ||
    (((type as ts.ObjectType).objectFlags & ts.ObjectFlags.Mapped) !== 0 &&
      checker.getPropertiesOfType(type).some((property) => declaredHere(property)));
  const isFunction = (type: ts.Type): boolean => type.getCallSignatures().length > 0;
  const isClassInstance = (type: ts.Type): boolean =>
    ((type.getSymbol()?.flags ?? 0) & ts.SymbolFlags.Class) !== 0;
  const acceptsUndefined = (type: ts.Type): boolean =>
    (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) !== 0 ||
    (type.isUnion() ? type.types.includes(undefinedType) : type === undefinedType);

  /**
   * A parameter the caller builds for the call: an inline object type (`{ stream: true }`), or a
   * type named as options are. Not the data it passes back (an event, a record it was given).
   */
  const optionsLike = (type: ts.Type): boolean => {
    const symbol = type.aliasSymbol ?? type.getSymbol();
    if (!symbol || symbol.name === '__type' || symbol.name === '__object') return true;
    return OPTIONS_NAME.test(symbol.name);
  };

  /** `AgentOptions (src/agent.ts)`: the type that declares a property, and the source to fix. */
  function declaredIn(property: ts.Symbol): string | undefined {
    const declaration = property.declarations?.[0];
    if (!declaration) return undefined;
    let owner: ts.Node = declaration.parent;
    if (ts.isTypeLiteralNode(owner) && ts.isTypeAliasDeclaration(owner.parent)) owner = owner.parent;
    if (!ts.isInterfaceDeclaration(owner) && !ts.isTypeAliasDeclaration(owner)) return undefined;
    const source = relative(typesDir, declaration.getSourceFile().fileName).replace(/\.d\.ts$/, '.ts');
    return `${owner.name.text} (${source})`;
  }

  /** An object the caller builds: its optional properties, and the objects inside it. */
  function visitObject(type: ts.Type, path: string): void {
    if (type.isUnion()) {
      for (const member of type.types) visitObject(member, path);
      return;
    }
    if (!(type.flags & ts.TypeFlags.Object) || !ours(type) || isFunction(type) || isClassInstance(type)) {
      return;
    }
    if (seen.has(type)) return;
    seen.add(type);
    for (const property of checker.getPropertiesOfType(type)) {
      const propertyType = checker.getTypeOfSymbol(property);
      const where = `${path}.${property.name}`;
      if (property.flags & ts.SymbolFlags.Optional && !acceptsUndefined(propertyType)) {
        found.add(`${declaredIn(property) ?? path}.${property.name}`);
      }
      visitObject(propertyType, where);
    }
  }

  function visitSignatures(signatures: readonly ts.Signature[], name: string): void {
    for (const signature of signatures) {
      for (const parameter of signature.getParameters()) {
        const type = checker.getTypeOfSymbol(parameter);
        // A named union is data (`RunNotice`) unless its name says options.
        if (type.aliasSymbol && !OPTIONS_NAME.test(type.aliasSymbol.name)) continue;
        for (const member of type.isUnion() ? type.types : [type]) {
          if (optionsLike(member)) visitObject(member, `${name}(${parameter.name})`);
        }
      }
      visitReturned(signature.getReturnType(), name);
    }
  }

  /** What a function returns: the caller calls its methods (`createOrchestrator().listRuns(filter)`). */
  function visitReturned(type: ts.Type, name: string): void {
    for (const member of type.isUnion() ? type.types : [type]) {
      if (!(member.flags & ts.TypeFlags.Object) || !ours(member) || seenReturned.has(member)) continue;
      seenReturned.add(member);
      for (const property of checker.getPropertiesOfType(member)) {
        const propertyType = checker.getTypeOfSymbol(property);
        visitSignatures(propertyType.getCallSignatures(), `${name}().${property.name}`);
      }
    }
  }

  for (const entry of typesEntries) {
    const module = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
    for (const exported of checker.getExportsOfModule(module)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      if (symbol.flags & ts.SymbolFlags.Function) {
        visitSignatures(checker.getTypeOfSymbol(symbol).getCallSignatures(), symbol.name);
      }
      if (symbol.flags & ts.SymbolFlags.Class) {
        const constructor = checker.getTypeOfSymbol(symbol);
        visitSignatures(constructor.getConstructSignatures(), `new ${symbol.name}`);
        for (const property of checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(symbol))) {
          const propertyType = checker.getTypeOfSymbol(property);
          visitSignatures(propertyType.getCallSignatures(), `${symbol.name}.${property.name}`);
        }
      }
      if (
        symbol.flags & (ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias) &&
        /Options$/.test(symbol.name)
      ) {
        visitObject(checker.getDeclaredTypeOfSymbol(symbol), symbol.name);
      }
    }
  }
  return [...found].sort();
}
